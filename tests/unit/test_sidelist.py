"""The exact side list merged into the graph's answer gives the exact top-k of all
rows when the graph's answer is exact: checked against a float64 brute force."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from knn_contracts.artifact import Metric
from knn_serving.sidelist import SideList, merge, merge_into

K = 10


def _distances(
    x: npt.NDArray[np.float32], q: npt.NDArray[np.float32], metric: Metric
) -> npt.NDArray[np.float64]:
    x64, q64 = x.astype(np.float64), q.astype(np.float64)
    if metric == "cosine":
        x64 = x64 / np.linalg.norm(x64, axis=1, keepdims=True)
        q64 = q64 / np.linalg.norm(q64, axis=1, keepdims=True)
    if metric == "l2":
        out: npt.NDArray[np.float64] = ((q64[:, None, :] - x64[None, :, :]) ** 2).sum(axis=2)
        return out
    return 1.0 - q64 @ x64.T


def _top(
    d: npt.NDArray[np.float64], labels: npt.NDArray[np.int64], k: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return labels[order], np.take_along_axis(d, order, axis=1).astype(np.float32)


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
@pytest.mark.parametrize("side_rows", [0, 5, 60])
def test_graph_plus_side_list_is_the_exact_answer(metric: Metric, side_rows: int) -> None:
    rng = np.random.default_rng(side_rows)
    data = rng.normal(size=(400, 12)).astype(np.float32)
    queries = rng.normal(size=(30, 12)).astype(np.float32)
    labels = np.arange(400, dtype=np.int64)
    held = rng.choice(400, size=side_rows, replace=False)
    in_graph = np.setdiff1d(labels, held)
    graph = _top(_distances(data[in_graph], queries, metric), in_graph, K)
    side = SideList.build(data[held], held.astype(np.int64), metric)
    want, _ = _top(_distances(data, queries, metric), labels, K)
    for got, _ in (merge_into(side, queries, graph, K), merge(graph, side.search(queries, K), K)):
        assert (np.asarray(got, dtype=np.int64) == want).mean() > 0.99


def test_exclude_drops_a_probe_s_own_row() -> None:
    rng = np.random.default_rng(1)
    data = rng.normal(size=(50, 4)).astype(np.float32)
    held = np.arange(10, dtype=np.int64)
    side = SideList.build(data[held], held, "l2")
    graph = _top(_distances(data[10:], data[held], "l2"), np.arange(10, 50, dtype=np.int64), 3)
    got, _ = merge(graph, side.search(data[held], 4), 3, exclude=held)
    assert not (got == held[:, None]).any()
    own = np.where(np.eye(10, 50) == 1, np.inf, _distances(data, data[held], "l2"))
    want, _ = _top(own, np.arange(50, dtype=np.int64), 3)
    assert (got == want).all()
