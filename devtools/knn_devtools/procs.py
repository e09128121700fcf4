"""Child processes that cannot outlive their owner: own process group, parent-death signal.

Each child gets its own session, so a Ctrl-C at the terminal reaches only the
Python owner, which then stops the children in order (kube-apiserver before
etcd). Stopping signals the whole process group, so helpers a child forked do
not stay behind. On Linux the child also asks the kernel for SIGKILL when its
owner dies, which covers an owner killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

_PR_SET_PDEATHSIG = 1


class ProcessError(RuntimeError):
    """A child failed to start or exited when it should be running."""


def free_loopback_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that nothing listens on right now.

    All are held open together so the kernel cannot hand out one port twice. It
    may give one to someone else before the child binds it; the caller sees that
    as an early exit of the child and may retry.
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


def _parent_death_signal() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    # The running interpreter's own symbols include libc's prctl; no library search.
    libc = ctypes.CDLL(None, use_errno=True)
    owner = os.getpid()

    def arm() -> None:
        # Runs in the child between fork and exec. The signal fires when the
        # thread that forked exits, so own children from a long-lived thread.
        # SIGKILL, not SIGTERM: kube-apiserver's graceful shutdown was seen to hang
        # for minutes when etcd got the same signal at the same moment.
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != owner:
            os._exit(1)  # the owner died before prctl: nobody would stop us

    return arm


class ManagedProcess:
    """A named child process whose output goes to a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        die_with_owner: bool = True,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self._die_with_owner = die_with_owner
        self._popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._popen is None:
            raise ProcessError(f"{self.name} was never started")
        return self._popen.pid

    def start(self) -> None:
        if self._popen is not None:
            raise ProcessError(f"{self.name} is already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        try:
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=self._env,
                cwd=self._cwd,
                start_new_session=True,
                preexec_fn=_parent_death_signal() if self._die_with_owner else None,
            )
        except OSError as err:
            self._log.close()
            self._log = None
            raise ProcessError(f"cannot start {self.name} ({self.argv[0]}): {err}") from err

    def poll(self) -> int | None:
        """The exit status, or None while running (or never started)."""
        return None if self._popen is None else self._popen.poll()

    def check_running(self) -> None:
        """Raises with the tail of the log if the child has exited."""
        code = self.poll()
        if code is not None:
            raise ProcessError(
                f"{self.name} exited with status {code}; last lines of {self.log_path}:\n"
                f"{self.log_tail()}"
            )

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the process group, SIGKILL after ``timeout``; idempotent."""
        popen = self._popen
        if popen is not None:
            if popen.poll() is None:
                _signal_group(popen.pid, signal.SIGTERM)
                try:
                    popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    _signal_group(popen.pid, signal.SIGKILL)
                    popen.wait()
            # The leader may be gone while a forked helper still holds the group.
            _signal_group(popen.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 64 * 1024))
                text = f.read().decode("utf-8", "replace")
        except OSError as err:
            return f"(cannot read log: {err})"
        return "\n".join(text.splitlines()[-lines:])


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
