"""The recall the build gate and the serving gauge report is the recall new queries get.

Ground truth is independent of the code under test: new queries (drawn from the
same space with another seed, never indexed) go to the real `knn-serve` over
HTTP, and their answers are judged against a float64 brute force written in the
tests (datasets.brute_force). The gate's number comes from the real `knn-build`'s
manifest, the gauge's from the real server's /metrics after its probe replay.

The leave-one-out method this replaced (probes are indexed rows, their own row
dropped from the answer) is measured the same way and must fail the same check:
otherwise the check could not tell a biased number from a true one.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING

import hnswlib
import numpy as np
import numpy.typing as npt
import pytest
from knn_contracts.artifact import CurvePoint, Metric, recall_at
from knn_devtools.synthetic import clustered

if TYPE_CHECKING:
    from tests.dataplane import servers as sv
    from tests.dataplane.datasets import brute_force
else:
    import servers as sv
    from datasets import brute_force

N, DIM, PROBES, NEW_QUERIES, K = 20_000, 64, 2_000, 2_000, 10
EF_VALUES = (16, 32, 64)
TOLERANCE = 0.02  # DESIGN section 6: within 0.02 of what new queries get
METRIC: Metric = "cosine"


def _recall(found: npt.NDArray[np.int64], truth: npt.NDArray[np.int64]) -> float:
    """Written here, not imported: the tests judge knn_serving.exact, not use it."""
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


def _truth(
    data: npt.NDArray[np.float32], queries: npt.NDArray[np.float32]
) -> npt.NDArray[np.int64]:
    parts = [
        brute_force(data, queries[i : i + 250], K, METRIC) for i in range(0, len(queries), 250)
    ]
    return np.concatenate(parts)


def _served_rows(server: sv.KnnServe, queries: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
    """The server's answers as row numbers (the tests' artifacts number rows 0..n-1)."""
    rows: list[list[int]] = []
    with server.client(timeout=120) as client:
        for i in range(0, len(queries), 500):
            r = client.post("/v1/query", json={"vectors": queries[i : i + 500].tolist(), "k": K})
            assert r.status_code == 200, r.text
            rows += [res["ids"] for res in r.json()["results"]]
    return np.asarray(rows, dtype=np.int64)


def _gauge(server: sv.KnnServe) -> float:
    samples = sv.metric_samples(server.metrics_text(), "knn_recall_ratio")
    assert len(samples) == 1, samples
    return float(samples[0].value)


def _leave_one_out(data: npt.NDArray[np.float32], rows: npt.NDArray[np.int64]) -> dict[int, float]:
    """The former method at each efSearch: every row in the graph, each probe's own
    row dropped from its answer and from its truth."""
    index = hnswlib.Index(space=METRIC, dim=DIM)
    index.init_index(max_elements=N, ef_construction=100, M=16, random_seed=42)
    index.add_items(data, np.arange(N), num_threads=2)
    truth = np.concatenate(
        [
            brute_force(data, data[rows[i : i + 250]], K, METRIC, exclude=rows[i : i + 250])
            for i in range(0, len(rows), 250)
        ]
    )
    out: dict[int, float] = {}
    for ef in EF_VALUES:
        index.set_ef(ef)
        labels, _ = index.knn_query(data[rows], k=K + 1, num_threads=2)
        found = np.asarray(
            [[x for x in r if x != own][:K] for r, own in zip(labels.tolist(), rows, strict=True)]
        )
        out[ef] = _recall(found, truth)
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> sv.Artifact:
    work = tmp_path_factory.mktemp("bias")
    data = clustered(N, DIM, seed=11)
    return sv.build_artifact(
        work,
        data,
        METRIC,
        ef_construction=100,
        ef_search=16,
        probe_queries=PROBES,
        k=K,
        min_recall=0.5,
    )


def test_gate_and_gauge_predict_new_query_recall(built: sv.Artifact, tmp_path: Path) -> None:
    new = clustered(NEW_QUERIES, DIM, seed=11, sample_seed=2024)
    truth = _truth(built.data, new)
    curve = built.manifest.validation.curve
    held_out = np.sort(np.load(built.directory / "probes.npz")["self_labels"]).astype(np.int64)
    assert held_out.shape == (PROBES,)
    loo_at = _leave_one_out(built.data, held_out)
    rows: list[str] = []
    for ef in EF_VALUES:
        gate = recall_at(curve, ef)
        assert gate is not None and any(p.ef_search == ef for p in curve), curve
        with sv.serve(built.directory, tmp_path / f"ef{ef}", args=["--ef-search", str(ef)]) as s:
            gauge = _gauge(s)
            actual = _recall(_served_rows(s, new), truth)
        loo = loo_at[ef]
        rows.append(f"ef {ef}: new {actual:.4f} gate {gate:.4f} gauge {gauge:.4f} loo {loo:.4f}")
        assert abs(gate - actual) <= TOLERANCE, rows
        assert abs(gauge - actual) <= TOLERANCE, rows
        if ef == EF_VALUES[0]:
            # The check has teeth: the old method's number is far off where it matters.
            assert abs(loo - actual) > TOLERANCE, rows
    print("\n".join(rows))


def test_curve_rises_with_ef_search(built: sv.Artifact) -> None:
    curve: list[CurvePoint] = built.manifest.validation.curve
    efs = [p.ef_search for p in curve]
    assert efs == sorted(efs) and efs[0] == K and 16 in efs and 64 in efs
    recalls = [p.recall for p in curve]
    assert all(a <= b for a, b in itertools.pairwise(recalls)), curve
    assert recalls[0] < recalls[-1]
    assert all(p.latency_us > 0 for p in curve)
    v = built.manifest.validation
    assert (v.method, v.held_out_rows, built.manifest.format_version) == ("held-out", PROBES, 2)
    assert built.manifest.parameters.ef_search == 16
    assert v.recall == recall_at(curve, 16)
