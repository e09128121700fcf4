"""Live recall: real queries sampled by the real `knn-serve`, checked by exact
search in the background, exported as counters that sum across workers.

Ground truth is the tests' own float64 brute force over the same vectors,
applied to the answers the server actually returned.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import hnswlib
import numpy as np
import numpy.typing as npt
import pytest
from knn_contracts.artifact import Metric
from knn_devtools.synthetic import clustered
from knn_serving.errors import ArtifactError
from knn_serving.hnswfile import map_vectors
from knn_serving.serve.live import exact_labels
from knn_serving.sidelist import SideList
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client import multiprocess as mp

if TYPE_CHECKING:
    from tests.dataplane import servers as sv
    from tests.dataplane.datasets import brute_force
else:
    import servers as sv
    from datasets import brute_force

N, DIM, K = 12_000, 48, 10
METRIC: Metric = "l2"
QUERIES = 600
TOLERANCE = 0.03
COUNTERS = ("found", "expected", "samples", "dropped")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> sv.Artifact:
    # efSearch 10 on clustered data: recall visibly below 1, so agreement means something.
    return sv.build_artifact(
        tmp_path_factory.mktemp("live"),
        clustered(N, DIM, seed=5),
        METRIC,
        ef_construction=60,
        ef_search=10,
        probe_queries=300,
        k=K,
        min_recall=0.3,
    )


def _totals(text: str) -> dict[str, float]:
    out = {}
    for name in COUNTERS:
        samples = [
            s
            for s in sv.metric_samples(text, f"knn_live_recall_{name}")
            if s.name.endswith("_total")
        ]
        out[name] = sum(s.value for s in samples)
    return out


def _per_worker(metrics_dir: Path, scratch: Path) -> list[dict[str, float]]:
    """Each worker's own counters: its one file collected alone (public API)."""
    out = []
    for i, db in enumerate(sorted(metrics_dir.glob("counter_*.db"))):
        alone = scratch / f"w{i}"
        alone.mkdir(parents=True)
        shutil.copy(db, alone / db.name)
        registry = CollectorRegistry()
        mp.MultiProcessCollector(registry, path=str(alone))  # type: ignore[no-untyped-call]
        out.append(_totals(generate_latest(registry).decode()))
    return out


def _ask(server: sv.KnnServe, queries: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
    rows = []
    for q in queries:
        # A new connection each time, so the kernel spreads them over both workers.
        with server.client() as c:
            r = c.post("/v1/query", json={"vector": q.tolist(), "k": K})
            assert r.status_code == 200, r.text
            rows.append(r.json()["ids"])
    return np.asarray(rows, dtype=np.int64)


def _wait_checked(server: sv.KnnServe, total: int, timeout: float = 120.0) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        counts = _totals(server.metrics_text())
        if counts["samples"] + counts["dropped"] >= total:
            return counts
        assert time.monotonic() < deadline, (counts, server.child.stderr_tail())
        time.sleep(0.2)


def _true_recall(
    data: npt.NDArray[np.float32], queries: npt.NDArray[np.float32], answers: npt.NDArray[np.int64]
) -> float:
    truth = brute_force(data, queries, K, METRIC)
    hits = sum(len(set(a.tolist()) & set(t.tolist())) for a, t in zip(answers, truth, strict=True))
    return hits / truth.size


def test_every_sampled_query_is_counted_once_across_two_workers(
    built: sv.Artifact, tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "multiproc"
    metrics_dir.mkdir()
    queries = clustered(QUERIES, DIM, seed=5, sample_seed=77)
    args = [
        "--workers", "2", "--live-recall-rate", "1", "--live-recall-cpu", "1",
        "--live-recall-queue", str(QUERIES),
    ]  # fmt: skip
    env = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    with sv.serve(built.directory, tmp_path / "logs", args=args, env=env, ready=False) as server:
        deadline = time.monotonic() + 60
        while server.child.stderr().count("warm-up replay") < 2:  # both workers loaded
            server.child.check_running()
            assert time.monotonic() < deadline, server.child.stderr_tail()
            time.sleep(0.1)
        server.wait_ready()
        answers = _ask(server, queries)
        counts = _wait_checked(server, QUERIES)
        workers = _per_worker(metrics_dir, tmp_path / "scratch")
    assert counts["dropped"] == 0 and counts["samples"] == QUERIES, counts
    assert counts["expected"] == K * QUERIES
    assert len(workers) == 2 and all(w["samples"] > 0 for w in workers), workers
    for name in COUNTERS:
        assert sum(w[name] for w in workers) == counts[name], (name, workers, counts)
    # Every query checked: the live number is the true recall of those answers
    # (a near-tie at float32 precision may count differently).
    live = counts["found"] / counts["expected"]
    actual = _true_recall(built.data, queries, answers)
    assert abs(live - actual) <= 0.005, (live, actual)
    assert actual < 0.99


def test_a_sample_predicts_the_stream(built: sv.Artifact, tmp_path: Path) -> None:
    """At a 25% rate, after the ~150 samples of a 600-query stream, live recall is
    within 0.03 of the recall of the whole stream."""
    queries = clustered(QUERIES, DIM, seed=5, sample_seed=78)
    args = ["--live-recall-rate", "0.25", "--live-recall-cpu", "0.5"]
    with sv.serve(built.directory, tmp_path / "logs", args=args) as server:
        answers = _ask(server, queries)
        time.sleep(1.0)
        counts = _wait_checked(server, 100)
        deadline = time.monotonic() + 60
        while True:  # the checker drains what is queued
            settled = _totals(server.metrics_text())
            if settled == counts or time.monotonic() > deadline:
                break
            counts = settled
            time.sleep(1.0)
    assert 100 <= counts["samples"] <= 220, counts
    live = counts["found"] / counts["expected"]
    actual = _true_recall(built.data, queries, answers)
    assert abs(live - actual) <= TOLERANCE, (live, actual, counts)


# --- the pieces, in process -------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_exact_check_reads_the_mapped_index_file(tmp_path: Path, metric: Metric) -> None:
    """The vectors mapped from a real hnswlib file (hnswlib's own layout) and the side
    list give the exact top-k of all rows: the tests' brute force agrees."""

    data = clustered(3000, 20, seed=9)
    held = np.arange(0, 3000, 30, dtype=np.int64)
    in_graph = np.setdiff1d(np.arange(3000), held)
    index = hnswlib.Index(space=metric, dim=20)
    index.init_index(max_elements=3000, ef_construction=50, M=8)
    index.add_items(data[in_graph], in_graph)
    index.save_index(str(tmp_path / "index.bin"))
    loaded = hnswlib.Index(space=metric, dim=20)
    loaded.load_index(str(tmp_path / "index.bin"), max_elements=3000)
    graph = map_vectors(tmp_path / "index.bin", loaded, 20)
    assert len(graph) == in_graph.size
    side = SideList.build(data[held], held, metric)
    queries = clustered(40, 20, seed=9, sample_seed=3)
    got = exact_labels(graph, side, metric, queries, K)
    want = brute_force(data, queries, K, metric)
    assert (got == want).mean() > 0.99  # equal but for a float32 near-tie


def test_a_file_that_is_not_hnswlib_layout_is_refused(tmp_path: Path) -> None:

    index = hnswlib.Index(space="l2", dim=8)
    index.init_index(max_elements=10)
    index.add_items(clustered(10, 8, seed=1), np.arange(10))
    index.save_index(str(tmp_path / "index.bin"))
    with pytest.raises(ArtifactError, match="layout not understood"):
        map_vectors(tmp_path / "index.bin", index, 16)  # wrong dimension
    (tmp_path / "short.bin").write_bytes(b"\0" * 10)
    with pytest.raises(ArtifactError, match="too short"):
        map_vectors(tmp_path / "short.bin", index, 8)
