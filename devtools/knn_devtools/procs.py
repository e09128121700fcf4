"""Child processes that cannot outlive their owner: own process group, parent-death signal.

Each child gets its own session, so a Ctrl-C at the terminal reaches only the
Python owner, which then stops the children in order (kube-apiserver before
etcd). Stopping signals the whole process group, so helpers a child forked do
not stay behind. On Linux the child also asks the kernel for a signal when its
owner dies, which covers an owner killed with SIGKILL.

One class, :class:`ManagedProcess`, serves the control plane (etcd,
kube-apiserver, ...: one log file each) and the data-plane helpers (knn-serve,
Prometheus: stdout and stderr in separate files, see :func:`log_files`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

_PR_SET_PDEATHSIG = 1
_TAIL_BYTES = 64 * 1024


class ProcessError(RuntimeError):
    """A child failed to start, exited when it should be running, or did not get ready."""


class ProcessTimeoutError(ProcessError):
    """A child kept running but did not reach the awaited state in time."""


def free_loopback_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that nothing listens on right now.

    All are held open together so the kernel cannot hand out one port twice. It
    may give one to someone else before the child binds it; the caller sees that
    as an early exit of the child and may retry (see :func:`start_on_free_port`).
    """
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
        return ports


def free_loopback_port() -> int:
    return free_loopback_ports(1)[0]


def log_files(log_dir: Path, name: str) -> tuple[Path, Path]:
    """Fresh ``(stdout, stderr)`` paths in ``log_dir`` for one run of ``name``, so
    children started again and again in one directory never share a file."""
    stem = f"{name}-{time.monotonic_ns()}"
    return log_dir / f"{stem}.out", log_dir / f"{stem}.err"


def _parent_death_signal(sig: signal.Signals) -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    # The running interpreter's own symbols include libc's prctl; no library search.
    libc = ctypes.CDLL(None, use_errno=True)
    owner = os.getpid()

    def arm() -> None:
        # Runs in the child between fork and exec. The signal fires when the
        # thread that forked exits, so own children from a long-lived thread.
        libc.prctl(_PR_SET_PDEATHSIG, sig)
        if os.getppid() != owner:
            os._exit(1)  # the owner died before prctl: nobody would stop us

    return arm


class ManagedProcess:
    """A named child process whose output goes to log files.

    stdout goes to ``log_path``; stderr goes there too unless ``stderr_path``
    names a file of its own. ``env``, if given, is the child's whole environment.
    ``death_signal`` is what the child gets when its owner dies (None: outlive
    it). SIGKILL by default: kube-apiserver's graceful shutdown was seen to hang
    for minutes when etcd got the same signal at the same moment. A supervisor
    that must stop its own workers (knn-serve) wants SIGTERM.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        stderr_path: Path | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        death_signal: signal.Signals | None = signal.SIGKILL,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.stderr_path = stderr_path if stderr_path is not None else log_path
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self._death_signal = death_signal
        self._popen: subprocess.Popen[bytes] | None = None
        self._files: list[IO[bytes]] = []

    @property
    def pid(self) -> int:
        return self._started().pid

    def _started(self) -> subprocess.Popen[bytes]:
        if self._popen is None:
            raise ProcessError(f"{self.name} was never started")
        return self._popen

    def start(self) -> None:
        if self._popen is not None:
            raise ProcessError(f"{self.name} is already started")
        shared = self.stderr_path == self.log_path
        for path in [self.log_path] if shared else [self.log_path, self.stderr_path]:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._files.append(open(path, "ab"))  # noqa: SIM115 - closed in stop()
        out, err = self._files[0], self._files[-1]
        try:
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT if err is out else err,
                env=self._env,
                cwd=self._cwd,
                start_new_session=True,
                preexec_fn=(
                    _parent_death_signal(self._death_signal)
                    if self._death_signal is not None
                    else None
                ),
            )
        except OSError as e:
            self._close_files()
            raise ProcessError(f"cannot start {self.name} ({self.argv[0]}): {e}") from e

    def poll(self) -> int | None:
        """The exit status, or None while running (or never started)."""
        return None if self._popen is None else self._popen.poll()

    def check_running(self) -> None:
        """Raises with the tail of the log if the child has exited."""
        code = self.poll()
        if code is not None:
            raise ProcessError(
                f"{self.name} exited with status {code}; last lines of {self.stderr_path}:\n"
                f"{self.stderr_tail()}"
            )

    def wait_until(
        self, what: str, check: Callable[[], bool], timeout: float, interval: float = 0.05
    ) -> None:
        """Calls ``check`` until it returns True. Raises :class:`ProcessError` if the
        child exits first, :class:`ProcessTimeoutError` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_running()
            if check():
                return
            if time.monotonic() > deadline:
                raise ProcessTimeoutError(
                    f"{self.name}: {what} not ready after {timeout:.0f}s; "
                    f"last lines of {self.stderr_path}:\n{self.stderr_tail()}"
                )
            time.sleep(interval)

    def send_signal(self, sig: signal.Signals) -> None:
        """Signal the process itself (not its group), as a kubelet signals PID 1."""
        self._started().send_signal(sig)

    def wait(self, timeout: float | None = None) -> int:
        """The exit status; raises if still running after ``timeout`` seconds."""
        try:
            return self._started().wait(timeout)
        except subprocess.TimeoutExpired:
            raise ProcessTimeoutError(
                f"{self.name} still running {timeout:.0f}s later; "
                f"last lines of {self.stderr_path}:\n{self.stderr_tail()}"
            ) from None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM to the process group, SIGKILL after ``timeout``; idempotent.
        The exit status (None if never started)."""
        popen = self._popen
        code = None
        if popen is not None:
            if popen.poll() is None:
                _signal_group(popen.pid, signal.SIGTERM)
                try:
                    popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    _signal_group(popen.pid, signal.SIGKILL)
                    popen.wait()
            code = popen.returncode
            # The leader may be gone while a forked helper (a worker) still holds the group.
            _signal_group(popen.pid, signal.SIGKILL)
        self._close_files()
        return code

    def stderr(self) -> str:
        """Everything the child has written to stderr so far."""
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def stderr_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of stderr (of the shared log, if there is one)."""
        try:
            with open(self.stderr_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - _TAIL_BYTES))
                text = f.read().decode("utf-8", "replace")
        except OSError as err:
            return f"(cannot read log: {err})"
        return "\n".join(text.splitlines()[-lines:])

    def _close_files(self) -> None:
        for f in self._files:
            f.close()
        self._files = []


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def start_on_free_port(
    spawn: Callable[[int], ManagedProcess],
    ready: Callable[[ManagedProcess], None],
    *,
    attempts: int = 3,
    stop_timeout: float = 10.0,
) -> ManagedProcess:
    """Starts ``spawn(port)`` on a free loopback port and waits with ``ready(child)``.

    A free port can be taken between choosing it and the child binding it: a
    child that exits saying "address already in use" is retried on a new port,
    up to ``attempts`` starts. On any other :class:`ProcessError` from ``ready``
    the child is stopped and the error raised.
    """
    for attempt in range(1, attempts + 1):
        child = spawn(free_loopback_port())
        child.start()
        try:
            ready(child)
        except ProcessError:
            collided = (
                child.poll() is not None and "address already in use" in child.stderr().lower()
            )
            child.stop(stop_timeout)
            if collided and attempt < attempts:
                continue
            raise
        return child
    raise AssertionError("unreachable: the last attempt returns or raises")


def http_ok(url: str) -> bool:
    """Whether ``GET url`` answers 200 within 2 s: a readiness probe to poll."""
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False
