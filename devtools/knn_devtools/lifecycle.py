"""What the control plane (knn_devtools.controlplane) and the local cluster
(knn_devtools.cluster) share as owners of long-lived child processes: use as a
context manager, and a process-wide safety net that stops whatever is still running
when the interpreter exits or gets SIGTERM/SIGHUP."""

from __future__ import annotations

import atexit
import contextlib
import signal
import threading
from types import FrameType, TracebackType
from typing import Generic, Protocol, Self, TypeVar


class Lifecycle:
    """``with obj:`` starts it and always stops it; ``stop`` must be idempotent."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _Stoppable(Protocol):
    def stop(self) -> None: ...


T = TypeVar("T", bound=_Stoppable)


class SafetyNet(Generic[T]):
    """The live objects of one kind, stopped at interpreter exit and on SIGTERM/SIGHUP
    (then the signal is redelivered: the process dies of it as it would have without
    us). Their children must not outlive a test run or a supervisor that was told to
    go."""

    def __init__(self) -> None:
        self._live: set[T] = set()
        self._lock = threading.Lock()
        self._hooks_installed = False

    def register(self, obj: T) -> None:
        with self._lock:
            self._live.add(obj)
            if self._hooks_installed:
                return
            self._hooks_installed = True
        atexit.register(self.stop_all)
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGHUP):
                # Someone who installed a handler owns shutdown; only the default
                # (die at once, skipping cleanup) is replaced.
                if signal.getsignal(sig) is signal.SIG_DFL:
                    signal.signal(sig, self._stop_all_and_redeliver)

    def unregister(self, obj: T) -> None:
        with self._lock:
            self._live.discard(obj)

    def stop_all(self) -> None:
        with self._lock:
            live = list(self._live)
        for obj in live:
            with contextlib.suppress(Exception):
                obj.stop()

    def _stop_all_and_redeliver(self, signum: int, frame: FrameType | None) -> None:
        self.stop_all()
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)
