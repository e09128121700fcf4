"""Nearest-centroid assignment and inertia. Pure numpy, no I/O.

The trainer, the validation gate and `/v1/assign` all assign with this one
function, so a probe's recorded assignment is what the server answers.
Distances are computed in float64 in the expanded form
|x|^2 - 2 x.c + |c|^2: float32 loses the small differences between two
near centroids when the vectors are far from the origin.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

# Rows per block: bounds the (rows, clusters) float64 distance matrix.
CHUNK_ROWS = 4096

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def _sq_distances(x: F64, centroids: F64, c_norms: F64) -> F64:
    d2: F64 = (x * x).sum(axis=1)[:, None] - 2.0 * (x @ centroids.T) + c_norms[None, :]
    # Rounding can make a zero distance slightly negative.
    np.maximum(d2, 0.0, out=d2)
    return d2


def nearest_centroid(
    vectors: npt.NDArray[np.floating] | npt.NDArray[np.uint8],
    centroids: npt.NDArray[np.floating],
    chunk: int = CHUNK_ROWS,
) -> tuple[I64, F64]:
    """For each row: the index of its nearest centroid (the lowest index on a tie) and
    the Euclidean distance to it."""
    c = np.asarray(centroids, dtype=np.float64)
    c_norms: F64 = (c * c).sum(axis=1)
    n = vectors.shape[0]
    labels: I64 = np.empty(n, dtype=np.int64)
    dist: F64 = np.empty(n, dtype=np.float64)
    for lo in range(0, n, chunk):
        x = np.asarray(vectors[lo : lo + chunk], dtype=np.float64)
        d2 = _sq_distances(x, c, c_norms)
        best = np.argmin(d2, axis=1)
        labels[lo : lo + x.shape[0]] = best
        dist[lo : lo + x.shape[0]] = np.sqrt(d2[np.arange(x.shape[0]), best])
    return labels, dist


def inertia(distances: F64) -> float:
    """Sum of squared distances to the nearest centroid (scikit-learn's definition)."""
    return float(np.square(distances).sum())


def silhouette(points: npt.NDArray[np.floating], labels: I64) -> float | None:
    """Mean silhouette of `points` labelled `labels` (Euclidean; scikit-learn's
    definition: a point alone in its cluster scores 0), or None when the labels name
    fewer than two clusters, where it is undefined. Quadratic in the points: for a
    probe set of hundreds, not for training data."""
    x = np.asarray(points, dtype=np.float64)
    n = x.shape[0]
    present, inverse, sizes = np.unique(labels, return_inverse=True, return_counts=True)
    if present.shape[0] < 2 or present.shape[0] >= n:
        return None
    norms = (x * x).sum(axis=1)
    d = np.sqrt(np.maximum(norms[:, None] - 2.0 * (x @ x.T) + norms[None, :], 0.0))
    np.fill_diagonal(d, 0.0)
    # Sum of distances from each point to each cluster's members: (n, clusters).
    one_hot = np.zeros((n, present.shape[0]))
    one_hot[np.arange(n), inverse] = 1.0
    sums = d @ one_hot
    own = sizes[inverse]
    a = sums[np.arange(n), inverse] / np.maximum(own - 1, 1)
    others = sums / sizes[None, :]
    others[np.arange(n), inverse] = np.inf
    b = others.min(axis=1)
    s = np.where(own > 1, (b - a) / np.maximum(np.maximum(a, b), np.finfo(np.float64).tiny), 0.0)
    return float(s.mean())


def cluster_sizes(labels: I64, clusters: int) -> list[int]:
    return [int(c) for c in np.bincount(labels, minlength=clusters)]
