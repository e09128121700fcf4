"""The real operator (`python -m knn_operator`) as a child process, for the
control-plane tests and `make bench --only operator`.

    operator = OperatorProcess(account.kubeconfig, log_dir / "operator.log")
    with operator:                  # running, and its liveness endpoint answered 200
        with PeakRss(operator.pid) as rss:
            ...
        rss.peak, operator.metrics()

The kubeconfig should be a ServiceAccount's (knn_devtools.rbac), so the operator
runs with exactly the chart's RBAC, as it would in a cluster. The child is a
:class:`~knn_devtools.procs.ManagedProcess`: its own process group, killed when
its owner dies, stdout and stderr in ``log_path``.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final

import psutil  # type: ignore[import-untyped]  # psutil ships no type information

from knn_devtools.procs import ManagedProcess, ProcessError, free_loopback_ports
from knn_devtools.tools import REPO_ROOT

CRD_DIR: Final = REPO_ROOT / "crds"
CRD_FILE: Final = CRD_DIR / "knnindexes.yaml"
CLUSTER_MODEL_CRD_FILE: Final = CRD_DIR / "clustermodels.yaml"
# Every kind the operator watches: it needs all of them installed.
CRD_FILES: Final = (CRD_FILE, CLUSTER_MODEL_CRD_FILE)
CLUSTER_ROLE_FILE: Final = REPO_ROOT / "rbac" / "clusterrole.yaml"
ROLE_FILE: Final = REPO_ROOT / "rbac" / "role.yaml"
ROLE_NAME: Final = "knn-operator"

# The operator's own default (knn_operator.settings.Settings.resync_seconds).
PRODUCTION_RESYNC_SECONDS: Final = 30.0
STARTUP_TIMEOUT: Final = 60.0
RECONCILE_HISTOGRAM: Final = "knn_operator_reconcile_duration_seconds"
RECONCILE_ERRORS: Final = "knn_operator_reconcile_errors_total"


class OperatorProcess:
    """`python -m knn_operator` as a child process, with its own ports and log file."""

    def __init__(
        self,
        kubeconfig: Path,
        log_path: Path,
        *,
        namespaces: Sequence[str] = (),
        resync_seconds: float = PRODUCTION_RESYNC_SECONDS,
        extra_env: Mapping[str, str] | None = None,
        log_level: str | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.namespaces = list(namespaces)
        self.resync_seconds = resync_seconds
        self.extra_env = dict(extra_env or {})
        self.log_level = log_level
        self.metrics_port = 0
        self.liveness_port = 0
        self._proc: ManagedProcess | None = None
        self.starts = 0

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("operator is not running")
        return self._proc.pid

    def start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            raise RuntimeError("operator is already running")
        self.metrics_port, self.liveness_port = free_loopback_ports(2)
        argv = [
            sys.executable,
            "-m",
            "knn_operator",
            "--metrics-port",
            str(self.metrics_port),
            "--liveness-port",
            str(self.liveness_port),
            "--bind",
            "127.0.0.1",
        ]
        if self.log_level is not None:
            argv += ["--log-level", self.log_level]
        for ns in self.namespaces:
            argv += ["--namespace", ns]
        env = dict(os.environ)
        env.update(
            {
                "KUBECONFIG": str(self.kubeconfig),
                "KNN_RESYNC_SECONDS": str(self.resync_seconds),
                "PYTHONUNBUFFERED": "1",
                **self.extra_env,
            }
        )
        # Only the token in KUBECONFIG may authenticate the operator.
        env.pop("KUBERNETES_SERVICE_HOST", None)
        self.starts += 1
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(argv)}\n")
        self._proc = ManagedProcess(
            "knn-operator", argv, self.log_path, env=env, cwd=self.log_path.parent
        )
        self._proc.start()
        self._proc.wait_until(
            "the liveness endpoint answering 200",
            lambda: self.liveness_status() == 200,
            timeout=STARTUP_TIMEOUT,
            interval=0.2,
        )

    def check_running(self) -> None:
        """Raises with the log tail if the operator has exited."""
        if self._proc is None:
            raise RuntimeError("operator was never started")
        self._proc.check_running()

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit status."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        proc.stop(timeout)
        return proc.poll()

    def kill(self) -> None:
        """SIGKILL: no clean-up, no final writes; what an OOM kill or node loss does."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        try:
            proc.wait(timeout=10)
        except ProcessError as e:
            raise AssertionError(f"the killed operator did not exit: {e}") from None
        proc.stop()  # closes the log; the process group is already gone

    def __enter__(self) -> OperatorProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- observation ---

    def _get(self, port: int, path: str) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read().decode("utf-8", "replace")
        finally:
            conn.close()

    def liveness_status(self) -> int | None:
        try:
            return self._get(self.liveness_port, "/healthz")[0]
        except (OSError, http.client.HTTPException):
            return None

    def metrics(self) -> str:
        status, text = self._get(self.metrics_port, "/metrics")
        assert status == 200, f"/metrics answered {status}: {text[:500]}"
        return text

    def reconciles(self) -> tuple[int, float, int]:
        """(reconciles finished, seconds spent in them, reconciles that raised) by
        the operator's own metrics, summed over kinds."""
        count, total, errors = 0.0, 0.0, 0.0
        for line in self.metrics().splitlines():
            if line.startswith(f"{RECONCILE_HISTOGRAM}_count{{"):
                count += float(line.rsplit(" ", 1)[1])
            elif line.startswith(f"{RECONCILE_HISTOGRAM}_sum{{"):
                total += float(line.rsplit(" ", 1)[1])
            elif line.startswith(f"{RECONCILE_ERRORS}{{"):
                errors += float(line.rsplit(" ", 1)[1])
        return int(count), total, int(errors)

    def rss_bytes(self) -> int:
        return int(psutil.Process(self.pid).memory_info().rss)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        tail = "\n".join(self.log_text().splitlines()[-lines:])
        return f"--- last {lines} lines of {self.log_path} ---\n{tail}"


class PeakRss:
    """Samples a process's resident set size in a thread; ``peak`` is the maximum seen."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self._process = psutil.Process(pid)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.peak = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, int(self._process.memory_info().rss))
            except psutil.Error:
                return
            self._stop.wait(self._interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
