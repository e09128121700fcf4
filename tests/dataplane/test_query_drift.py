"""Query drift of an index: the real `knn-serve` exports the nearest-neighbour distance
of live queries and its ratio to the probe set's. Checked against a numpy brute
force (datasets.brute_force) on queries the server never saw."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pytest
from knn_serving import artifact

if TYPE_CHECKING:  # mypy resolves modules from the repository root...
    from tests.dataplane import datasets as ds
    from tests.dataplane import servers as sv
else:  # ...pytest puts this directory (it has no __init__.py) on sys.path.
    import datasets as ds
    import servers as sv

DIM, COUNT, WINDOW = 16, 2000, 300


def exact_nearest_sq(
    data: npt.NDArray[np.float32], queries: npt.NDArray[np.float32]
) -> list[float]:
    """Squared L2 distance to the exact nearest row (hnswlib's l2 distance)."""
    rows = ds.brute_force(data, queries, 1, "l2")[:, 0]
    diff = queries.astype(np.float64) - data[rows].astype(np.float64)
    return [float(x) for x in (diff**2).sum(axis=1)]


def value(text: str, name: str, suffix: str = "") -> float | None:
    found = [s for s in sv.metric_samples(text, name) if s.name == name + suffix]
    if not found:
        return None
    (s,) = found
    assert s.labels["index"] == sv.INDEX_NAME, s.labels
    return float(s.value)


def test_query_distance_ratio(tmp_path: Path) -> None:
    data = ds.gaussian(COUNT, DIM, seed=61)
    art = sv.build_artifact(tmp_path, data, "l2", probe_queries=200, ef_search=128)
    probes = artifact.Probes.load(art.directory / "probes.npz")
    # Held-out probes: their nearest neighbour among the other rows.
    own = probes.self_labels
    diff = probes.queries.astype(np.float64) - data[probes.truth[:, 0]].astype(np.float64)
    probe_mean = float((diff**2).sum(axis=1).mean())
    assert (probes.truth[:, 0] != own).all()

    like = ds.gaussian(400, DIM, seed=62)
    away = ds.gaussian(WINDOW, DIM, seed=63) + np.float32(2.5)
    with sv.serve(art.directory, tmp_path / "logs", args=["--drift-window", str(WINDOW)]) as s:
        text = s.metrics_text()
        assert value(text, "knn_query_probe_nn_distance_mean") == pytest.approx(
            probe_mean, rel=1e-4
        )
        assert value(text, "knn_query_distance_ratio") is None  # no live query yet
        with s.client() as c:
            for q in like:
                assert c.post("/v1/query", json={"vector": q.tolist(), "k": 5}).status_code == 200
            text = s.metrics_text()
            live = exact_nearest_sq(data, like)
            assert value(text, "knn_query_nn_distance", "_count") == len(like)
            assert value(text, "knn_query_nn_distance", "_sum") == pytest.approx(
                sum(live), rel=1e-4
            )
            ratio = value(text, "knn_query_distance_ratio")
            assert ratio == pytest.approx(np.mean(live[-WINDOW:]) / probe_mean, rel=1e-4)
            assert ratio is not None and 0.75 < ratio < 1.33  # queries like the data

            r = c.post("/v1/query", json={"vectors": away.tolist(), "k": 5})
            assert r.status_code == 200
            ratio = value(s.metrics_text(), "knn_query_distance_ratio")
            moved = exact_nearest_sq(data, away)
            assert ratio == pytest.approx(np.mean(moved) / probe_mean, rel=1e-4)
            assert ratio is not None and ratio > 3.0  # the queries moved away from the data
