"""scikit-learn's k-means, called one way: k-means++ init and every parameter
that changes the result given explicitly (n_init in particular, whose default
changed between scikit-learn releases).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from knn_contracts.kmeans import Algorithm
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.metrics import silhouette_score
from threadpoolctl import threadpool_limits

from ..centroids import nearest_centroid

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class TrainSettings:
    algorithm: Algorithm
    n_init: int
    max_iter: int
    seed: int
    batch_size: int
    threads: int


def fit_centroids(x: F32, k: int, s: TrainSettings) -> F32:
    """The (k, d) float32 centroids of the best of `n_init` runs."""
    model: KMeans | MiniBatchKMeans
    if s.algorithm == "minibatch":
        model = MiniBatchKMeans(
            n_clusters=k,
            init="k-means++",
            n_init=s.n_init,
            max_iter=s.max_iter,
            batch_size=s.batch_size,
            random_state=s.seed,
        )
    else:
        model = KMeans(
            n_clusters=k,
            init="k-means++",
            n_init=s.n_init,
            max_iter=s.max_iter,
            algorithm="lloyd",
            random_state=s.seed,
        )
    # scikit-learn's k-means runs on OpenMP and BLAS threads: bound both to --threads.
    with threadpool_limits(limits=s.threads):
        model.fit(x)
    centroids: F32 = np.ascontiguousarray(model.cluster_centers_, dtype=np.float32)
    return centroids


def silhouette(sample: F32, centroids: F32, threads: int) -> float:
    """Silhouette of the sample labelled by nearest centroid; -1 (the worst value)
    when the sample falls into a single cluster, where it is undefined."""
    labels, _ = nearest_centroid(sample, centroids)
    distinct = int(np.unique(labels).shape[0])
    if distinct < 2 or distinct > sample.shape[0] - 1:
        return -1.0
    with threadpool_limits(limits=threads):
        return float(silhouette_score(sample, labels, metric="euclidean"))
