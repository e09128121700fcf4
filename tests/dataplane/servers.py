"""Real data-plane processes for tests: `knn-build`, `knn-serve` and Prometheus.

Nothing here is a test double. Each helper runs the real command on
127.0.0.1 (a free port), waits until it answers, and stops it on exit. The
process mechanics (process groups, dying with the owner, logs, free ports) and
`knn-serve` itself come from knn_devtools (procs.py, knnserve.py); this module
adds the tests' identity labels, `knn-build` with test inputs, and Prometheus:

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
import json
import shutil
import signal
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx
import numpy as np
import numpy.typing as npt
from knn_contracts.artifact import MANIFEST_FILE, BuildSummary, Manifest, Metric
from knn_contracts.kmeans import KMeansManifest
from knn_devtools import knnserve
from knn_devtools.knnserve import KNN_BUILD, KNN_SERVE, LOOPBACK
from knn_devtools.procs import ManagedProcess, ProcessError, log_files, start_on_free_port
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

__all__ = [
    "HTTP_FRONTS",
    "KNN_BUILD",
    "KNN_SERVE",
    "LOOPBACK",
    "Artifact",
    "KMeansArtifact",
    "KnnServe",
    "ManagedProcess",
    "MissingCommandError",
    "ModelServe",
    "ProcessError",
    "Prometheus",
    "ServerError",
    "build_artifact",
    "build_kmeans_artifact",
    "child_processes",
    "front_args",
    "metric_samples",
    "prometheus",
    "promtool_check_metrics",
    "require_command",
    "serve",
    "serve_model",
]

# `knn-serve --http` fronts that must answer alike: the suites that pin client-visible
# behaviour (bad input, fuzz, k-means routes) run against each (`front_args`).
HTTP_FRONTS = ("uvicorn", "direct")


def front_args(front: str) -> list[str]:
    return ["--http", front]


# Default identity labels the tests pass to knn-serve.
INDEX_NAME = "test-index"
NAMESPACE = "test-ns"


class ServerError(RuntimeError):
    """A command is missing, `knn-build` failed, or Prometheus answered a query badly.
    (A process that fails to start or to get ready raises `ProcessError`.)"""


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


@dataclass(frozen=True)
class KMeansArtifact:
    """One k-means version written by the real `knn-build --kind kmeans`."""

    directory: Path
    manifest: KMeansManifest
    data: npt.NDArray[np.float32]
    summary: BuildSummary


def build_kmeans_artifact(
    workdir: Path,
    data: npt.NDArray[np.float32],
    *,
    clusters: int | None = None,
    clusters_range: str | None = None,
    version: str = "km1",
    probe_points: int = 200,
    extra: Sequence[str] = (),
    threads: int = 1,
    timeout: float = 300.0,
) -> KMeansArtifact:
    """Write `data` to an .npy file and train a model on it with the real `knn-build`."""
    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / f"{version}-source.npy"
    with source.open("wb") as f:
        np.save(f, np.ascontiguousarray(data, dtype=np.float32), allow_pickle=False)
    which = ["--clusters", str(clusters)] if clusters else ["--clusters-range", str(clusters_range)]
    summary_file = workdir / f"{version}-summary.json"
    args = [
        "--kind", "kmeans", "--source", str(source), *which, "--version", version,
        "--probe-queries", str(probe_points), "--threads", str(threads),
        "--out", str(workdir / "artifacts"), "--summary-file", str(summary_file), *extra,
    ]  # fmt: skip
    run = subprocess.run(
        [str(KNN_BUILD), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if run.returncode != 0:
        raise ServerError(f"knn-build exited {run.returncode}:\n{run.stderr[-4000:]}")
    directory = workdir / "artifacts" / version
    manifest = KMeansManifest.model_validate_json((directory / MANIFEST_FILE).read_bytes())
    summary = BuildSummary.model_validate_json(summary_file.read_bytes())
    return KMeansArtifact(directory, manifest, np.asarray(data, dtype=np.float32), summary)


# --- child processes --------------------------------------------------------------------------


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


# --- knn-serve --------------------------------------------------------------------------------


class KnnServe(knnserve.KnnServe):
    """The real `knn-serve` (knn_devtools.knnserve), labelled index=test-index and
    namespace=test-ns unless a test names others."""

    default_index_name: ClassVar[str | None] = INDEX_NAME
    default_namespace: ClassVar[str | None] = NAMESPACE


serve = KnnServe.serve

MODEL_NAME = "test-model"


class ModelServe(KnnServe):
    """The real `knn-serve` of a k-means model: `--model-name` (label `model`)
    instead of `--index-name`."""

    default_index_name: ClassVar[str | None] = None

    def argv(self) -> list[str]:
        named = "--model-name" in self.args
        return super().argv() + ([] if named else ["--model-name", MODEL_NAME])


serve_model = ModelServe.serve


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
        web_config: dict[str, Any] | None = None,
        basic_auth: tuple[str, str] | None = None,
        ca_file: Path | None = None,
        discovered: bool = False,
        binary: Path | None = None,
        extra_jobs: Mapping[str, Sequence[str]] | None = None,
        rule_files: Sequence[Path] = (),
    ) -> None:
        """`web_config` is Prometheus' --web.config.file (basic_auth_users, tls_server_config);
        `basic_auth` and `ca_file` are what this helper itself then uses to reach it.
        `binary` another Prometheus than Debian's (e.g. the pinned build of the tools
        cache); `extra_jobs` more scrape jobs (name → static targets, labels honoured);
        `rule_files` rule files it evaluates at each scrape interval."""
        self.workdir = workdir
        self.targets = list(targets)
        self.scrape_interval = scrape_interval
        self.job = job
        self.port = 0
        self.config_path = workdir / "prometheus.yml"
        self.web_config = web_config
        self.web_config_path = workdir / "web.yml"
        self.basic_auth = basic_auth
        self.ca_file = ca_file
        # discovered: targets come from a file Prometheus watches (file_sd), so a test
        # can add servers that start after Prometheus, as pods appear in a cluster.
        self.discovered = discovered
        self.targets_path = workdir / "targets.json"
        self.binary = binary
        self.extra_jobs = dict(extra_jobs or {})
        self.rule_files = [str(f) for f in rule_files]
        self._child: ManagedProcess | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.web_config and "tls_server_config" in self.web_config else "http"
        return f"{scheme}://{LOOPBACK}:{self.port}"

    def _ready(self) -> bool:
        try:
            with self.client(timeout=2.0) as c:
                return c.get("/-/ready").status_code == 200
        except httpx.TransportError:
            return False

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
                    **self._targets_config(),
                },
                *(
                    {
                        "job_name": name,
                        "honor_labels": True,
                        "scrape_interval": self.scrape_interval,
                        "scrape_timeout": self.scrape_interval,
                        "static_configs": [{"targets": list(targets)}],
                    }
                    for name, targets in self.extra_jobs.items()
                ),
            ],
            **({"rule_files": self.rule_files} if self.rule_files else {}),
        }

    def _targets_config(self) -> dict[str, Any]:
        if not self.discovered:
            return {"static_configs": [{"targets": self.targets}]}
        return {"file_sd_configs": [{"files": [str(self.targets_path)], "refresh_interval": "1s"}]}

    def set_targets(self, targets: Sequence[str]) -> None:
        """The scraped targets from now on (discovered=True): replaced atomically."""
        self.targets = list(targets)
        tmp = self.targets_path.with_suffix(".tmp")
        tmp.write_text(json.dumps([{"targets": self.targets}]) + "\n", encoding="utf-8")
        tmp.replace(self.targets_path)

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.discovered and not self.targets_path.exists():
            self.set_targets(self.targets)
        # JSON is YAML: no YAML library needed to write Prometheus' configuration.
        self.config_path.write_text(json.dumps(self.config(), indent=2) + "\n", encoding="utf-8")
        return self.config_path

    def start(self, timeout: float = 60.0) -> None:
        binary = self.binary if self.binary is not None else require_command("prometheus")
        self.write_config()
        web: list[str] = []
        if self.web_config is not None:
            self.web_config_path.write_text(json.dumps(self.web_config, indent=2) + "\n")
            web = [f"--web.config.file={self.web_config_path}"]

        def spawn(port: int) -> ManagedProcess:
            self.port = port
            out, err = log_files(self.workdir / "logs", "prometheus")
            self._child = ManagedProcess(
                "prometheus",
                [
                    str(binary),
                    f"--config.file={self.config_path}",
                    f"--storage.tsdb.path={self.workdir / f'tsdb-{port}'}",
                    f"--web.listen-address={LOOPBACK}:{port}",
                    "--web.enable-lifecycle",
                    "--log.level=warn",
                    *web,
                ],
                out,
                stderr_path=err,
                death_signal=signal.SIGTERM,
            )
            return self._child

        def ready(child: ManagedProcess) -> None:
            child.wait_until("/-/ready", self._ready, timeout, 0.1)

        start_on_free_port(spawn, ready, stop_timeout=15.0)

    def client(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            timeout=timeout,
            trust_env=False,
            auth=self.basic_auth,
            verify=ssl.create_default_context(cafile=self.ca_file) if self.ca_file else True,
        )

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
    def child(self) -> ManagedProcess:
        if self._child is None:
            raise ProcessError("prometheus was never started")
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
