"""Real data-plane processes for tests: `knn-build`, `knn-serve` and Prometheus.

Nothing here is a test double. Each helper runs the real command on
127.0.0.1 (a free port), waits until it answers, and stops it on exit:

    art = build_artifact(tmp_path, vectors, "l2")              # the real knn-build
    with serve(art.directory, tmp_path / "logs") as server:     # real knn-serve, /readyz 200
        server.client().post("/v1/query", json={"vector": [...], "k": 10})
        with prometheus(tmp_path / "prom", [server.address]) as prom:  # real Prometheus
            prom.query('knn_recall_ratio{index="test-index"}')

Commands a test needs but cannot find raise `MissingCommandError`: such tests
fail loudly instead of skipping (`make install` installs Prometheus).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import numpy as np
import numpy.typing as npt
from knn_contracts.artifact import MANIFEST_FILE, Manifest, Metric
from knn_devtools.procs import free_loopback_port
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

__all__ = [
    "KNN_BUILD",
    "KNN_SERVE",
    "LOOPBACK",
    "Artifact",
    "ChildProcess",
    "KnnServe",
    "MissingCommandError",
    "Prometheus",
    "ServerError",
    "build_artifact",
    "child_processes",
    "metric_samples",
    "prometheus",
    "promtool_check_metrics",
    "require_command",
    "serve",
]

LOOPBACK = "127.0.0.1"
BIN = Path(sys.executable).parent
KNN_BUILD = BIN / "knn-build"
KNN_SERVE = BIN / "knn-serve"

# Default identity labels the tests pass to knn-serve.
INDEX_NAME = "test-index"
NAMESPACE = "test-ns"

_PR_SET_PDEATHSIG = 1
_START_ATTEMPTS = 3  # a free port can be taken between choosing it and binding it


class ServerError(RuntimeError):
    """A process failed to start, exited early, or did not answer in time."""


class MissingCommandError(ServerError):
    """A command the test needs is not installed (the test fails, never skips)."""


def require_command(name: str) -> Path:
    """Absolute path of `name` on PATH (or /usr/bin); raise if it is missing."""
    found = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/local/bin")
    if found is None:
        raise MissingCommandError(
            f"'{name}' is not installed; run `make install` (hack/install-system-deps.sh "
            f"installs Debian's prometheus package, which provides prometheus and promtool)"
        )
    return Path(found)


# --- artifacts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Artifact:
    """One version written by the real `knn-build`, with the inputs it was built from."""

    directory: Path
    manifest: Manifest
    data: npt.NDArray[np.float32]
    ids: Sequence[int | str]  # the original id of each row, by position

    @property
    def metric(self) -> Metric:
        return self.manifest.metric

    def row_of(self) -> dict[int | str, int]:
        """Original id → row number in `data`."""
        return {v: i for i, v in enumerate(self.ids)}


def build_artifact(
    workdir: Path,
    data: npt.NDArray[np.float32],
    metric: Metric,
    *,
    ids: Sequence[int] | Sequence[str] | None = None,
    version: str = "v1",
    m: int = 16,
    ef_construction: int = 100,
    ef_search: int = 64,
    probe_queries: int = 200,
    k: int = 10,
    min_recall: float = 0.5,
    threads: int = 2,
    timeout: float = 120.0,
) -> Artifact:
    """Write `data` (and `ids`) to files and build an artifact with the real `knn-build`.

    Integer ids go to an int64 `.npy`, string ids to a `.json` list; without
    `ids` the builder numbers rows 0..n-1.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / f"{version}-source.npy"
    with source.open("wb") as f:
        np.save(f, np.ascontiguousarray(data, dtype=np.float32), allow_pickle=False)
    args: list[str] = [
        "--source", str(source), "--metric", metric, "--version", version,
        "--m", str(m), "--ef-construction", str(ef_construction), "--ef-search", str(ef_search),
        "--probe-queries", str(probe_queries), "--k", str(k), "--min-recall", str(min_recall),
        "--threads", str(threads), "--out", str(workdir / "artifacts"),
        "--summary-file", str(workdir / f"{version}-summary.json"),
    ]  # fmt: skip
    id_list: list[int] | list[str]
    if ids is None:
        id_list = list(range(data.shape[0]))
    elif all(isinstance(i, str) for i in ids):
        id_list = [str(i) for i in ids]
        ids_file = workdir / f"{version}-ids.json"
        ids_file.write_text(json.dumps(id_list, ensure_ascii=False), encoding="utf-8")
        args += ["--ids", str(ids_file)]
    else:
        id_list = [int(i) for i in ids]
        ids_file = workdir / f"{version}-ids.npy"
        with ids_file.open("wb") as f:
            np.save(f, np.asarray(id_list, dtype=np.int64), allow_pickle=False)
        args += ["--ids", str(ids_file)]
    run = subprocess.run(
        [str(KNN_BUILD), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if run.returncode != 0:
        raise ServerError(f"knn-build exited {run.returncode}:\n{run.stderr[-4000:]}")
    directory = workdir / "artifacts" / version
    manifest = Manifest.model_validate_json((directory / MANIFEST_FILE).read_bytes())
    return Artifact(directory, manifest, np.asarray(data, dtype=np.float32), id_list)


# --- child processes --------------------------------------------------------------------------


def _die_with_owner() -> Callable[[], None] | None:
    """A preexec hook asking Linux for SIGTERM when the owning thread dies."""
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name, use_errno=True)

    def arm() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return arm


class ChildProcess:
    """A command in its own process group with stdout and stderr in separate files."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_dir: Path,
        *,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        log_dir.mkdir(parents=True, exist_ok=True)
        stem = f"{name}-{time.monotonic_ns()}"
        self.stdout_path = log_dir / f"{stem}.out"
        self.stderr_path = log_dir / f"{stem}.err"
        self._env = {**os.environ, **env} if env is not None else None
        self._popen: subprocess.Popen[bytes] | None = None
        self._files: list[IO[bytes]] = []

    @property
    def popen(self) -> subprocess.Popen[bytes]:
        if self._popen is None:
            raise ServerError(f"{self.name} was never started")
        return self._popen

    @property
    def pid(self) -> int:
        return self.popen.pid

    def start(self) -> None:
        if self._popen is not None:
            raise ServerError(f"{self.name} is already started")
        out, err = self.stdout_path.open("wb"), self.stderr_path.open("wb")
        self._files = [out, err]
        try:
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=self._env,
                start_new_session=True,
                preexec_fn=_die_with_owner(),
            )
        except OSError as e:
            self._close_files()
            raise ServerError(f"cannot start {self.name} ({self.argv[0]}): {e}") from e

    def poll(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    def check_running(self) -> None:
        code = self.poll()
        if code is not None:
            raise ServerError(
                f"{self.name} exited with status {code}; stderr:\n{self.stderr_tail()}"
            )

    def send_signal(self, sig: signal.Signals) -> None:
        """Signal the process itself (not its group), as a kubelet signals PID 1."""
        self.popen.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """The exit status; raise ServerError if still running after `timeout` seconds."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise ServerError(
                f"{self.name} still running {timeout:.0f}s later; stderr:\n{self.stderr_tail()}"
            ) from None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM to the process group, SIGKILL after `timeout`; idempotent. The exit status."""
        popen = self._popen
        code = None
        if popen is not None:
            if popen.poll() is None:
                _signal_group(popen.pid, signal.SIGTERM)
                try:
                    popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    _signal_group(popen.pid, signal.SIGKILL)
                    popen.wait(10)
            code = popen.returncode
            # Workers a supervisor forked may outlive it in the group.
            _signal_group(popen.pid, signal.SIGKILL)
        self._close_files()
        return code

    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def stderr_tail(self, lines: int = 40) -> str:
        return "\n".join(self.stderr().splitlines()[-lines:])

    def _close_files(self) -> None:
        for f in self._files:
            f.close()
        self._files = []


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def child_processes(pid: int) -> dict[int, str]:
    """Direct children of `pid` (Linux /proc): pid → command line."""
    out: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid ...": comm may hold spaces, so split after ')'.
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                cmdline = (stat.parent / "cmdline").read_bytes()
                out[int(stat.parent.name)] = cmdline.replace(b"\0", b" ").decode().strip()
        except (OSError, IndexError, ValueError):
            continue  # the process went away while we looked
    return out


def _poll_until(
    what: str,
    check: Callable[[], bool],
    child: ChildProcess,
    timeout: float,
    interval: float = 0.05,
) -> None:
    """Call `check` until it returns True; raise if `child` exits or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        child.check_running()
        if check():
            return
        if time.monotonic() > deadline:
            raise ServerError(
                f"{child.name}: {what} not reached within {timeout:.0f}s; stderr:\n"
                f"{child.stderr_tail()}"
            )
        time.sleep(interval)


def _address_in_use(child: ChildProcess) -> bool:
    return child.poll() is not None and "address already in use" in child.stderr().lower()


# --- knn-serve --------------------------------------------------------------------------------


class KnnServe:
    """The real `knn-serve` on 127.0.0.1 and a free port."""

    def __init__(
        self,
        artifact: Path | str,
        log_dir: Path,
        *,
        index_name: str = INDEX_NAME,
        namespace: str = NAMESPACE,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.artifact = artifact
        self.log_dir = log_dir
        self.index_name = index_name
        self.namespace = namespace
        self.args = list(args)
        self.env = env
        self.port = 0
        self._child: ChildProcess | None = None

    @property
    def child(self) -> ChildProcess:
        if self._child is None:
            raise ServerError("knn-serve was never started")
        return self._child

    @property
    def address(self) -> str:
        """host:port, as a Prometheus target."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def client(self, timeout: float = 30.0) -> httpx.Client:
        # trust_env=False: loopback requests never go through a proxy from the environment.
        return httpx.Client(base_url=self.url, timeout=timeout, trust_env=False)

    def argv(self) -> list[str]:
        return [
            str(KNN_SERVE), "--artifact", str(self.artifact),
            "--host", LOOPBACK, "--port", str(self.port),
            "--index-name", self.index_name, "--namespace", self.namespace,
            *self.args,
        ]  # fmt: skip

    def start(self, *, ready: bool = True, timeout: float = 60.0) -> None:
        """Start and wait for /readyz 200 (`ready`) or for /healthz 200 (listening only)."""
        for attempt in range(_START_ATTEMPTS):
            self.port = free_loopback_port()
            self._child = ChildProcess("knn-serve", self.argv(), self.log_dir, env=self.env)
            self._child.start()
            try:
                self.wait_listening(timeout)
            except ServerError:
                if attempt + 1 < _START_ATTEMPTS and _address_in_use(self._child):
                    self._child.stop()
                    continue
                self._child.stop()
                raise
            break
        if ready:
            self.wait_ready(timeout)

    def _status(self, path: str) -> int | None:
        try:
            with self.client(timeout=2.0) as c:
                return c.get(path).status_code
        except httpx.TransportError:
            return None

    def wait_listening(self, timeout: float = 60.0) -> None:
        _poll_until("/healthz 200", lambda: self._status("/healthz") == 200, self.child, timeout)

    def wait_ready(self, timeout: float = 60.0) -> None:
        _poll_until("/readyz 200", lambda: self._status("/readyz") == 200, self.child, timeout)

    def metrics_text(self) -> str:
        with self.client() as c:
            r = c.get("/metrics")
            r.raise_for_status()
            return r.text

    def stop(self, timeout: float = 15.0) -> int | None:
        return None if self._child is None else self._child.stop(timeout)


@contextlib.contextmanager
def serve(
    artifact: Path | str,
    log_dir: Path,
    *,
    ready: bool = True,
    index_name: str = INDEX_NAME,
    namespace: str = NAMESPACE,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> Iterator[KnnServe]:
    """A started `knn-serve` (ready, unless `ready=False`), stopped on exit."""
    server = KnnServe(
        artifact, log_dir, index_name=index_name, namespace=namespace, args=args, env=env
    )
    try:
        server.start(ready=ready, timeout=timeout)
        yield server
    finally:
        server.stop()


# --- metrics text -----------------------------------------------------------------------------


def metric_samples(text: str, name: str) -> list[Sample]:
    """Every sample of the family `name` (e.g. `knn_requests`, `knn_query_duration_seconds`)
    in a Prometheus text exposition."""
    out: list[Sample] = []
    for family in text_string_to_metric_families(text):
        if family.name == name:
            out.extend(family.samples)
    return out


def promtool_check_metrics(text: str) -> subprocess.CompletedProcess[str]:
    """`promtool check metrics` on an exposition; raises if promtool is missing."""
    promtool = require_command("promtool")
    return subprocess.run(
        [str(promtool), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --- Prometheus -------------------------------------------------------------------------------


class Prometheus:
    """The real Prometheus server scraping static loopback targets, with its HTTP API."""

    def __init__(
        self,
        workdir: Path,
        targets: Sequence[str],
        *,
        scrape_interval: str = "1s",
        job: str = "knn-serve",
    ) -> None:
        self.workdir = workdir
        self.targets = list(targets)
        self.scrape_interval = scrape_interval
        self.job = job
        self.port = 0
        self.config_path = workdir / "prometheus.yml"
        self._child: ChildProcess | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def config(self) -> dict[str, Any]:
        return {
            "global": {
                "scrape_interval": self.scrape_interval,
                "evaluation_interval": self.scrape_interval,
            },
            "scrape_configs": [
                {
                    "job_name": self.job,
                    # Keep the server's own index/version/namespace labels as they are.
                    "honor_labels": True,
                    "scrape_interval": self.scrape_interval,
                    "scrape_timeout": self.scrape_interval,
                    "static_configs": [{"targets": self.targets}],
                }
            ],
        }

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # JSON is YAML: no YAML library needed to write Prometheus' configuration.
        self.config_path.write_text(json.dumps(self.config(), indent=2) + "\n", encoding="utf-8")
        return self.config_path

    def start(self, timeout: float = 60.0) -> None:
        binary = require_command("prometheus")
        self.write_config()
        for attempt in range(_START_ATTEMPTS):
            self.port = free_loopback_port()
            data = self.workdir / f"tsdb-{attempt}"
            self._child = ChildProcess(
                "prometheus",
                [
                    str(binary),
                    f"--config.file={self.config_path}",
                    f"--storage.tsdb.path={data}",
                    f"--web.listen-address={LOOPBACK}:{self.port}",
                    "--web.enable-lifecycle",
                    "--log.level=warn",
                ],
                self.workdir / "logs",
            )
            self._child.start()
            try:
                _poll_until("/-/ready 200", self._ready, self._child, timeout, interval=0.1)
            except ServerError:
                if attempt + 1 < _START_ATTEMPTS and _address_in_use(self._child):
                    self._child.stop()
                    continue
                self._child.stop()
                raise
            return

    def _ready(self) -> bool:
        try:
            with self.client(timeout=2.0) as c:
                return c.get("/-/ready").status_code == 200
        except httpx.TransportError:
            return False

    def client(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout, trust_env=False)

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant PromQL query; the `result` list of a vector answer."""
        with self.client() as c:
            r = c.get("/api/v1/query", params={"query": expr})
        body = r.json()
        if r.status_code != 200 or body.get("status") != "success":
            raise ServerError(f"PromQL {expr!r} failed: HTTP {r.status_code} {body}")
        data = body["data"]
        if data["resultType"] != "vector":
            raise ServerError(f"PromQL {expr!r}: expected a vector, got {data['resultType']}")
        result: list[dict[str, Any]] = data["result"]
        return result

    def values(self, expr: str) -> list[float]:
        return [float(s["value"][1]) for s in self.query(expr)]

    def wait_for(
        self,
        expr: str,
        accept: Callable[[list[dict[str, Any]]], bool],
        timeout: float = 30.0,
        interval: float = 0.5,
    ) -> list[dict[str, Any]]:
        """Query `expr` until `accept(result)`; the accepted result, or raise with the last one."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if accept(result):
                return result
            if time.monotonic() > deadline:
                raise ServerError(f"PromQL {expr!r}: not accepted within {timeout:.0f}s: {result}")
            time.sleep(interval)

    def targets_health(self) -> list[dict[str, Any]]:
        with self.client() as c:
            active: list[dict[str, Any]] = c.get("/api/v1/targets").json()["data"]["activeTargets"]
        return active

    def stop(self, timeout: float = 30.0) -> int | None:
        return None if self._child is None else self._child.stop(timeout)

    @property
    def child(self) -> ChildProcess:
        if self._child is None:
            raise ServerError("prometheus was never started")
        return self._child


@contextlib.contextmanager
def prometheus(
    workdir: Path, targets: Sequence[str], *, scrape_interval: str = "1s"
) -> Iterator[Prometheus]:
    """A started Prometheus (ready), stopped on exit."""
    prom = Prometheus(workdir, targets, scrape_interval=scrape_interval)
    try:
        prom.start()
        yield prom
    finally:
        prom.stop()
