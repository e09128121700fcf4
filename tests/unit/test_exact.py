"""knn_serving.exact against a naive full sort written here, in float64."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from knn_contracts.artifact import Metric
from knn_serving.exact import drop_self, exact_topk, recall_at_k

METRICS: tuple[Metric, ...] = ("l2", "ip", "cosine")


def naive_distances(
    data: npt.NDArray[np.generic], queries: npt.NDArray[np.generic], metric: Metric
) -> npt.NDArray[np.float64]:
    x = np.asarray(data, dtype=np.float64)
    q = np.asarray(queries, dtype=np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    if metric == "l2":
        out: npt.NDArray[np.float64] = ((q[:, None, :] - x[None, :, :]) ** 2).sum(axis=2)
        return out
    return -(q @ x.T)


def naive_topk(
    data: npt.NDArray[np.generic],
    queries: npt.NDArray[np.generic],
    k: int,
    metric: Metric,
    exclude: npt.NDArray[np.int64] | None = None,
) -> npt.NDArray[np.int64]:
    dist = naive_distances(data, queries, metric)
    if exclude is not None:
        for i, own in enumerate(exclude):
            if own >= 0:
                dist[i, own] = np.inf
    return np.argsort(dist, axis=1, kind="stable")[:, :k].astype(np.int64)


def assert_same_neighbours(
    got: npt.NDArray[np.int64],
    want: npt.NDArray[np.int64],
    data: npt.NDArray[np.generic],
    queries: npt.NDArray[np.generic],
    metric: Metric,
) -> None:
    """Same labels in the same order, except where two candidates are tied to
    float32 precision: there, the distances must agree instead."""
    assert got.shape == want.shape
    assert got.dtype == np.int64
    for row in got:
        assert len(set(row.tolist())) == row.size, "a label returned twice"
    dist = naive_distances(data, queries, metric)
    got_d = np.take_along_axis(dist, got, axis=1)
    want_d = np.take_along_axis(dist, want, axis=1)
    np.testing.assert_allclose(got_d, want_d, rtol=1e-5, atol=1e-5)
    # Ties to that precision are rare in continuous random data: nearly all labels match.
    assert (got == want).mean() > 0.99


@pytest.fixture(scope="module")
def data() -> npt.NDArray[np.float32]:
    return np.random.default_rng(7).standard_normal((301, 12), dtype=np.float32)


@pytest.fixture(scope="module")
def queries() -> npt.NDArray[np.float32]:
    return np.random.default_rng(8).standard_normal((23, 12), dtype=np.float32)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("block_bytes", [1, 3_000, 50_000, 256 << 20])
def test_exact_topk_matches_a_full_sort(
    data: npt.NDArray[np.float32],
    queries: npt.NDArray[np.float32],
    metric: Metric,
    block_bytes: int,
) -> None:
    # block_bytes=1 forces blocks of k rows (31 blocks, the last one shorter
    # than k); 3_000 gives blocks of 11-ish rows; the default is one block.
    k = 10
    got = exact_topk(data, queries, k, metric, block_bytes=block_bytes)
    assert_same_neighbours(got, naive_topk(data, queries, k, metric), data, queries, metric)


@pytest.mark.parametrize("metric", METRICS)
def test_block_size_does_not_change_the_answer(
    data: npt.NDArray[np.float32], queries: npt.NDArray[np.float32], metric: Metric
) -> None:
    one_block = exact_topk(data, queries, 7, metric)
    for block_bytes in (1, 777, 4096, 100_000):
        np.testing.assert_array_equal(
            exact_topk(data, queries, 7, metric, block_bytes=block_bytes), one_block
        )


@pytest.mark.parametrize("metric", METRICS)
def test_exclude_drops_each_querys_own_row(data: npt.NDArray[np.float32], metric: Metric) -> None:
    rows = np.array([0, 5, 150, 299, 300], dtype=np.int64)
    queries = data[rows]
    exclude = rows.copy()
    exclude[2] = -1  # this query keeps its own row
    k = 6
    got = exact_topk(data, queries, k, metric, exclude=exclude, block_bytes=1)
    for i, own in enumerate(exclude):
        if own >= 0:
            assert own not in got[i]
    # With l2 and cosine a row is its own nearest neighbour; with ip it need
    # not be, so only the first two metrics can check position 0.
    if metric != "ip":
        assert got[2, 0] == rows[2]
    assert_same_neighbours(
        got, naive_topk(data, queries, k, metric, exclude), data, queries, metric
    )


def test_exclude_lets_k_reach_all_other_rows() -> None:
    data = np.random.default_rng(1).standard_normal((12, 3), dtype=np.float32)
    rows = np.arange(12, dtype=np.int64)
    got = exact_topk(data, data, 11, "l2", exclude=rows, block_bytes=1)
    for i in range(12):
        assert sorted(got[i].tolist()) == [j for j in range(12) if j != i]
    with pytest.raises(ValueError, match="k=12 exceeds"):
        exact_topk(data, data, 12, "l2", exclude=rows)
    with pytest.raises(ValueError, match="k=13 exceeds"):
        exact_topk(data, data, 13, "l2")


def test_exact_topk_on_uint8_data() -> None:
    data = np.random.default_rng(2).integers(0, 256, size=(200, 8), dtype=np.uint8)
    queries = np.random.default_rng(3).integers(0, 256, size=(9, 8)).astype(np.float32)
    got = exact_topk(data, queries, 5, "l2", block_bytes=500)
    # Integer data has exact ties; compare distances, which are exact here.
    dist = naive_distances(data, queries, "l2")
    np.testing.assert_array_equal(
        np.take_along_axis(dist, got, axis=1), np.sort(dist, axis=1)[:, :5]
    )


def test_cosine_ignores_vector_length() -> None:
    rng = np.random.default_rng(4)
    data = rng.standard_normal((100, 6), dtype=np.float32)
    scaled = data * rng.uniform(0.01, 100.0, size=(100, 1)).astype(np.float32)
    queries = rng.standard_normal((10, 6), dtype=np.float32)
    np.testing.assert_array_equal(
        exact_topk(data, queries, 5, "cosine"), exact_topk(scaled, queries, 5, "cosine")
    )


def test_recall_at_k_known_values() -> None:
    truth = np.array([[1, 2, 3, 4], [5, 6, 7, 8]], dtype=np.int64)
    assert recall_at_k(truth.copy(), truth) == 1.0
    # Order within the top-k does not matter.
    assert recall_at_k(truth[:, ::-1].copy(), truth) == 1.0
    assert recall_at_k(np.array([[9, 10, 11, 12], [13, 14, 15, 16]]), truth) == 0.0
    # Row 0 finds 2 of 4, row 1 finds 3 of 4: 5 / 8.
    found = np.array([[1, 2, 90, 91], [8, 7, 6, 92]], dtype=np.int64)
    assert recall_at_k(found, truth) == pytest.approx(5 / 8)
    # Only the first k columns of `found` count, even if more were returned.
    wide = np.array([[90, 91, 92, 93, 1], [5, 6, 7, 8, 99]], dtype=np.int64)
    assert recall_at_k(wide, truth) == pytest.approx(4 / 8)
    assert recall_at_k(np.empty((0, 4), np.int64), np.empty((0, 4), np.int64)) == 1.0


def test_drop_self() -> None:
    labels = np.array(
        [
            [7, 1, 2, 3],  # own label first
            [1, 2, 7, 3],  # own label in the middle
            [1, 2, 3, 4],  # own label absent: the last one goes
            [4, 3, 2, 1],  # no own label (-1): the first k stay
        ],
        dtype=np.int64,
    )
    own = np.array([7, 7, 7, -1], dtype=np.int64)
    out = drop_self(labels, own, 3)
    np.testing.assert_array_equal(out, [[1, 2, 3], [1, 2, 3], [1, 2, 3], [4, 3, 2]])
    assert out.dtype == np.int64
