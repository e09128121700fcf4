"""knn_serving.centroids against a float64 brute force by full differences."""

from __future__ import annotations

import numpy as np
import pytest
from knn_serving.centroids import cluster_sizes, inertia, nearest_centroid, silhouette
from sklearn.metrics import silhouette_score


def brute(x: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = np.sqrt(((x[:, None, :].astype(np.float64) - c[None, :, :]) ** 2).sum(axis=2))
    return d.argmin(axis=1), d.min(axis=1)


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_matches_brute_force_across_chunks(chunk: int) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((100, 6)).astype(np.float32) * 5 + 100.0  # far from the origin
    c = rng.standard_normal((9, 6)).astype(np.float32) * 5 + 100.0
    labels, dist = nearest_centroid(x, c, chunk=chunk)
    want_l, want_d = brute(x, c)
    assert labels.tolist() == want_l.tolist()
    np.testing.assert_allclose(dist, want_d, rtol=1e-6)


def test_a_point_on_a_centroid_is_at_distance_zero_and_ties_go_to_the_lowest() -> None:
    c = np.array([[1.0, 0.0], [-1.0, 0.0]], dtype=np.float32)
    labels, dist = nearest_centroid(np.array([[1.0, 0.0], [0.0, 3.0]], dtype=np.float32), c)
    assert labels.tolist() == [0, 0]
    assert dist[0] == 0.0 and dist[1] == pytest.approx(np.sqrt(10.0))


def test_uint8_rows_and_inertia_and_sizes() -> None:
    x = np.array([[0, 0], [2, 0], [10, 10]], dtype=np.uint8)
    c = np.array([[1.0, 0.0], [10.0, 10.0], [50.0, 50.0]])
    labels, dist = nearest_centroid(x, c)
    assert labels.tolist() == [0, 0, 1]
    assert inertia(dist) == pytest.approx(2.0)
    assert cluster_sizes(labels, 3) == [2, 1, 0]


@pytest.mark.parametrize(("n", "k", "seed"), [(40, 2, 1), (300, 7, 2), (12, 11, 3)])
def test_silhouette_is_scikit_learns(n: int, k: int, seed: int) -> None:
    """Random labels (so some clusters are singletons or tiny) and blobs."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 5)) * 3 + 50.0  # far from the origin, as real data can be
    labels = rng.integers(0, k, n)
    labels[:2] = [0, 1]  # at least two clusters
    assert silhouette(x, labels) == pytest.approx(silhouette_score(x, labels), abs=1e-9)
    centres = rng.standard_normal((k, 5)) * 20
    blob_labels = np.arange(n) % k
    blobs = centres[blob_labels] + rng.standard_normal((n, 5))
    assert silhouette(blobs, blob_labels) == pytest.approx(
        silhouette_score(blobs, blob_labels), abs=1e-9
    )


def test_silhouette_is_undefined_for_one_cluster_or_one_point_each() -> None:
    x = np.arange(12, dtype=np.float64).reshape(6, 2)
    assert silhouette(x, np.zeros(6, dtype=np.int64)) is None
    assert silhouette(x, np.arange(6, dtype=np.int64)) is None
