"""A real Prometheus scraping a real `knn-serve` of a k-means model: the cluster
series arrive with the server's own model/version/namespace labels, and the PSI
Prometheus stores is the one this test computes by hand on the stream it sent
(vectors the server never saw, assigned here by numpy brute force)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

if TYPE_CHECKING:  # mypy resolves modules from the repository root...
    from tests.dataplane import datasets as ds
    from tests.dataplane import servers as sv
else:  # ...pytest puts this directory (it has no __init__.py) on sys.path.
    import datasets as ds
    import servers as sv

pytestmark = pytest.mark.prometheus

MODEL, NAMESPACE = "segments", "prom-ns"
DIM, K, WINDOW = 8, 4, 400
EPSILON = 1e-4  # knn_serving.drift.PSI_EPSILON, as documented


def hand_psi(expected: list[int], labels: np.ndarray) -> float:
    p = np.maximum(np.asarray(expected, dtype=np.float64) / sum(expected), EPSILON)
    q = np.bincount(labels, minlength=len(expected)) / labels.shape[0]
    q = np.maximum(q, EPSILON)
    return float(((q - p) * np.log(q / p)).sum())


def one(result: list[dict[str, Any]]) -> float | None:
    return float(result[0]["value"][1]) if len(result) == 1 else None


def test_cluster_series_in_prometheus(tmp_path: Path) -> None:
    data, _, centres = ds.blobs(2000, DIM, K, seed=51)
    art = sv.build_kmeans_artifact(tmp_path, data, clusters=K, version="m7", probe_points=100)
    centroids = np.load(art.directory / "centroids.npy")
    rng = np.random.default_rng(52)
    # Live traffic that leans on two clusters: a shift PSI must show.
    which = rng.choice(K, size=600, p=[0.45, 0.45, 0.05, 0.05])
    stream = (centres[which] + rng.standard_normal((600, DIM))).astype(np.float32)
    labels, _ = ds.nearest(stream, centroids)
    args = ["--model-name", MODEL, "--drift-window", str(WINDOW)]
    with (
        sv.serve_model(art.directory, tmp_path / "logs", namespace=NAMESPACE, args=args) as s,
        sv.prometheus(tmp_path / "prom", [s.address]) as prom,
        s.client() as c,
    ):
        prom.wait_for('up{job="knn-serve"}', lambda r: one(r) == 1.0)
        for lo in range(0, 600, 40):
            r = c.post("/v1/assign", json={"vectors": stream[lo : lo + 40].tolist()})
            assert r.status_code == 200, r.text
        want = hand_psi(art.manifest.cluster_sizes, labels[-WINDOW:])
        assert want > 0.1
        expr = f'knn_cluster_drift_psi{{model="{MODEL}",namespace="{NAMESPACE}"}}'

        def matches(r: list[dict[str, Any]]) -> bool:
            value = one(r)
            return value is not None and abs(value - want) < 1e-9

        result = prom.wait_for(expr, matches)
        assert result[0]["metric"]["version"] == "m7"
        total = f'sum(knn_cluster_assignments_total{{model="{MODEL}"}})'
        prom.wait_for(total, lambda r: one(r) == 600.0)
        per = prom.query(f'knn_cluster_assignments_total{{model="{MODEL}"}}')
        got = {int(x["metric"]["cluster"]): float(x["value"][1]) for x in per}
        assert got == {i: float(n) for i, n in enumerate(np.bincount(labels, minlength=K))}
        time.sleep(1.5)
        for name in (
            "knn_cluster_drift_psi",
            "knn_cluster_distance_ratio",
            "knn_cluster_distance_count",
            "knn_cluster_centroids",
            "knn_requests_total",
            "knn_index_info",
        ):
            series = prom.query(f'{name}{{job="knn-serve"}}')
            assert series, name
            for x in series:
                labels_ = x["metric"]
                assert labels_["model"] == MODEL and "index" not in labels_, labels_
                assert (labels_["namespace"], labels_["version"]) == (NAMESPACE, "m7"), labels_
