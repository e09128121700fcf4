"""The real `knn-serve` process: readiness, refusing corrupt artifacts, `--check`,
graceful shutdown on SIGTERM, and `--workers 2` with multiprocess metrics."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pytest
from knn_contracts.artifact import IDS_FILE, INDEX_FILE, MANIFEST_FILE

if TYPE_CHECKING:  # mypy resolves modules from the repository root...
    from tests.dataplane import servers as sv
else:  # ...pytest puts this directory (it has no __init__.py) on sys.path.
    import servers as sv

DIM = 16


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> sv.Artifact:
    tmp = tmp_path_factory.mktemp("small")
    data = np.random.default_rng(3).standard_normal((1000, DIM), dtype=np.float32)
    return sv.build_artifact(tmp, data, "l2", probe_queries=100)


def vector(seed: int = 0) -> list[float]:
    out: list[float] = np.random.default_rng(seed).standard_normal(DIM).tolist()
    return out


def check(artifact: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(sv.KNN_SERVE), "--check", "--artifact", str(artifact)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --- readiness ----------------------------------------------------------------------------------


def test_ready_only_after_load_and_warm_up(tmp_path: Path) -> None:
    """Probed from the moment the server listens: every /readyz before the first 200 is a
    503 saying why, and by the first 200 the warm-up replay has run and set the gauge."""
    # Enough probes that loading and the warm-up replay take a noticeable moment.
    data = np.random.default_rng(4).standard_normal((4000, 32), dtype=np.float32)
    art = sv.build_artifact(
        tmp_path, data, "l2", probe_queries=3000, k=50, ef_search=200, m=12, ef_construction=64
    )
    server = sv.KnnServe(art.directory, tmp_path / "logs")
    try:
        server.start(ready=False)
        not_ready: list[str] = []
        with server.client() as c:
            assert c.get("/healthz").status_code == 200
            deadline = time.monotonic() + 60
            while True:
                r = c.get("/readyz")
                if r.status_code == 200:
                    break
                assert r.status_code == 503, r.text
                not_ready.append(r.json()["detail"])
                assert time.monotonic() < deadline, not_ready[-5:]
                time.sleep(0.005)
            assert r.json() == {"status": "ready"}
            # Ready means the warm-up replay has finished: its log line, the gauge, /v1/info.
            assert "warm-up replay of 3000 probes" in server.child.stderr()
            text = server.metrics_text()
            gauges = sv.metric_samples(text, "knn_recall_ratio")
            assert [s.labels["k"] for s in gauges] == ["50"]
            info = c.get("/v1/info").json()
            assert info["live"]["ready"] is True
            assert info["live"]["recall"] == pytest.approx(gauges[0].value)
            assert c.get("/healthz").json() == {"status": "ok"}
        assert set(not_ready) <= {"loading index", "warming up: replaying probe set"}, not_ready
    finally:
        server.stop()


def test_info_and_health(small: sv.Artifact, tmp_path: Path) -> None:
    with sv.serve(small.directory, tmp_path) as server, server.client() as c:
        assert c.get("/healthz").status_code == 200
        r = c.get("/v1/info")
        assert r.status_code == 200
        doc = r.json()
        doc.pop("live")
        assert doc == small.manifest.model_dump(mode="json")
        assert r.headers["content-type"] == "application/json"


# --- corrupt artifacts --------------------------------------------------------------------------


def flip_index_byte(d: Path) -> None:
    path = d / INDEX_FILE
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))


def delete_ids(d: Path) -> None:
    (d / IDS_FILE).unlink()


def garbage_manifest(d: Path) -> None:
    (d / MANIFEST_FILE).write_bytes(b"\x00not json{{")


CORRUPTIONS: dict[str, tuple[Callable[[Path], None], str]] = {
    "flipped-index-byte": (flip_index_byte, "sha256 mismatch"),
    "deleted-ids": (delete_ids, "missing"),
    "garbage-manifest": (garbage_manifest, "invalid manifest"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_corrupt_artifact_is_refused(small: sv.Artifact, tmp_path: Path, case: str) -> None:
    corrupt, problem = CORRUPTIONS[case]
    directory = tmp_path / "artifact"
    shutil.copytree(small.directory, directory)
    corrupt(directory)

    # --check names the problem and exits 3.
    run = check(directory)
    assert run.returncode == 3, (run.stdout, run.stderr)
    assert "artifact refused" in run.stderr
    assert problem in run.stderr, run.stderr

    with sv.serve(directory, tmp_path / "logs", ready=False) as server, server.client() as c:
        deadline = time.monotonic() + 30
        while True:
            r = c.get("/readyz")
            assert r.status_code == 503, r.text
            detail = r.json()["detail"]
            if detail.startswith("artifact refused"):
                break
            assert time.monotonic() < deadline, detail
            time.sleep(0.05)
        assert problem in detail, detail

        single = c.post("/v1/query", json={"vector": vector(), "k": 5})
        assert single.status_code == 503
        assert problem in single.json()["detail"]
        binary = c.post(
            "/v1/query",
            content=np.zeros(DIM, dtype="<f4").tobytes(),
            headers={"content-type": "application/octet-stream"},
        )
        assert binary.status_code == 503
        assert c.get("/v1/info").status_code == 503
        assert c.get("/healthz").status_code == 200  # alive, just not ready
        time.sleep(0.5)
        server.child.check_running()  # stays up
        assert c.get("/readyz").status_code == 503  # and stays unready
        assert "artifact refused" in server.child.stderr()
        assert problem in server.child.stderr()
        # Refusals are counted, under the server's identity labels.
        refused = [
            s
            for s in sv.metric_samples(server.metrics_text(), "knn_requests")
            if s.name == "knn_requests_total" and s.labels["code"] == "503"
        ]
        assert sum(s.value for s in refused) == 2
        assert all(
            s.labels["index"] == sv.INDEX_NAME and s.labels["namespace"] == sv.NAMESPACE
            for s in refused
        )


def test_check_passes_a_good_artifact(small: sv.Artifact) -> None:
    run = check(small.directory)
    assert run.returncode == 0, run.stderr
    assert "verified" in run.stdout
    assert small.manifest.version in run.stdout


# --- graceful shutdown --------------------------------------------------------------------------


@dataclass
class Outcome:
    response: httpx.Response | None = None
    error: BaseException | None = None
    done: float = 0.0


def test_sigterm_drains_an_in_flight_request(tmp_path: Path) -> None:
    """A slow batch (~0.5-2 s: 1024 queries at ef 4096 on one search thread) is in
    flight when SIGTERM arrives: it completes with 200 and the server exits 0."""
    dim, n, batch, drain = 64, 5000, 1024, 15
    data = np.random.default_rng(5).standard_normal((n, dim), dtype=np.float32)
    art = sv.build_artifact(tmp_path, data, "l2", m=8, ef_construction=64, probe_queries=50)
    queries = np.random.default_rng(6).standard_normal((batch, dim), dtype=np.float32)
    args = ["--batch-threads", "1", "--max-ef", "4096", "--drain-seconds", str(drain)]
    server = sv.KnnServe(art.directory, tmp_path / "logs", args=args)
    try:
        server.start()
        outcome = Outcome()

        def slow_request() -> None:
            try:
                with server.client(timeout=60) as c:
                    outcome.response = c.post(
                        "/v1/query",
                        params={"k": 10, "ef": 4096},
                        content=queries.astype("<f4").tobytes(),
                        headers={"content-type": "application/octet-stream"},
                    )
            except BaseException as e:  # reported by the assertions below
                outcome.error = e
            finally:
                outcome.done = time.monotonic()

        thread = threading.Thread(target=slow_request, name="slow-request")
        started = time.monotonic()
        thread.start()
        time.sleep(0.3)  # the body (256 KiB) is sent and the search is running
        assert thread.is_alive(), "the request finished before SIGTERM; make it slower"
        signalled = time.monotonic()
        server.child.send_signal(signal.SIGTERM)
        thread.join(timeout=drain + 10)
        assert not thread.is_alive()
        assert outcome.error is None, repr(outcome.error)
        assert outcome.response is not None
        assert outcome.response.status_code == 200, outcome.response.text
        assert len(outcome.response.json()["results"]) == batch
        assert outcome.done > signalled, "the request must have been in flight at SIGTERM"
        code = server.child.wait(timeout=drain)
        assert code == 0, server.child.stderr_tail()
        assert time.monotonic() - signalled < drain
        assert "Shutting down" in server.child.stderr()
        assert outcome.done - started > 0.3
    finally:
        server.stop()


# --- two workers --------------------------------------------------------------------------------


def test_two_workers_share_metrics(small: sv.Artifact, tmp_path: Path) -> None:
    requests = 40
    metrics_dir = tmp_path / "prom-multiproc"
    metrics_dir.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    with sv.serve(
        small.directory, tmp_path / "logs", args=["--workers", "2"], env=env, ready=False
    ) as server:
        # Both workers load the index; wait until each has logged its warm-up.
        deadline = time.monotonic() + 60
        while server.child.stderr().count("warm-up replay") < 2:
            server.child.check_running()
            assert time.monotonic() < deadline, server.child.stderr_tail()
            time.sleep(0.1)
        server.wait_ready()

        children = sv.child_processes(server.child.pid)
        # Forked from the supervisor (cli._preload), the workers keep its command line.
        workers = {pid for pid, cmd in children.items() if "--workers 2" in cmd}
        assert len(workers) == 2, children

        codes: list[int] = []
        for i in range(requests):
            # A new connection each time, so the kernel spreads them over both workers.
            with server.client() as c:
                r = c.post("/v1/query", json={"vector": vector(i), "k": 5})
                codes.append(r.status_code)
        assert codes == [200] * requests

        text = server.metrics_text()
        counted = [
            s for s in sv.metric_samples(text, "knn_requests") if s.name == "knn_requests_total"
        ]
        assert sum(s.value for s in counted) == requests, text
        assert {s.labels["version"] for s in counted} == {small.manifest.version}
        durations = [
            s
            for s in sv.metric_samples(text, "knn_query_duration_seconds")
            if s.name == "knn_query_duration_seconds_count" and s.labels["source"] == "live"
        ]
        assert sum(s.value for s in durations) == requests
        # One gauge for the pod, not one per worker.
        assert len(sv.metric_samples(text, "knn_recall_ratio")) == 1
        # Each worker process writes its own files into the shared directory.
        assert workers <= {int(f.stem.rsplit("_", 1)[1]) for f in metrics_dir.glob("*.db")}
    code = server.child.poll()
    assert code == 0, server.child.stderr_tail()
    # The directory was the user's: kept, with the workers' files.
    assert f"multiprocess metrics in {metrics_dir} (from PROMETHEUS_MULTIPROC_DIR; kept)" in (
        server.child.stderr()
    )
    assert workers <= {int(f.stem.rsplit("_", 1)[1]) for f in metrics_dir.glob("*.db")}


def test_two_workers_remove_the_metrics_directory_they_created(
    small: sv.Artifact, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    server = sv.KnnServe(small.directory, tmp_path / "logs", args=["--workers", "2"])
    try:
        server.start()
        found = re.search(
            r"INFO multiprocess metrics in (\S+) \(removed on exit\)", server.child.stderr()
        )
        assert found, server.child.stderr_tail()
        metrics_dir = Path(found[1])
        with server.client() as c:
            r = c.post("/v1/query", json={"vector": vector(), "k": 5})
            assert r.status_code == 200, r.text
        assert list(metrics_dir.glob("*.db")), "the workers write their metrics there"
        server.child.send_signal(signal.SIGTERM)
        code = server.child.wait(timeout=30)
        assert code == 0, server.child.stderr_tail()
    finally:
        server.stop()
    assert not metrics_dir.exists()
    assert f"removed the multiprocess metrics directory {metrics_dir}" in server.child.stderr()
