"""The exact side list: rows kept out of the HNSW graph, searched exactly and
merged into every answer. Pure numpy, no I/O.

Probe rows live here (artifact format 2) so that a replayed probe meets the graph
as a new query does, while no user vector is lost. Distances are hnswlib's own
(squared L2; 1 - inner product; 1 - cosine similarity), so graph and side-list
results merge by plain comparison.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from knn_contracts.artifact import Metric

from .exact import unit_rows

Labels = npt.NDArray[np.int64]
Distances = npt.NDArray[np.float32]


@dataclass(frozen=True)
class SideList:
    vectors: npt.NDArray[np.float32]  # (n, d), unit rows under cosine
    labels: Labels  # (n,) hnswlib labels (row positions in ids.npy)
    metric: Metric
    sq_norms: npt.NDArray[np.float32]  # (n,) for l2

    @classmethod
    def build(cls, vectors: npt.NDArray[np.float32], labels: Labels, metric: Metric) -> SideList:
        v = np.ascontiguousarray(vectors, dtype=np.float32)
        if metric == "cosine":
            v = unit_rows(v)
        sq = np.einsum("ij,ij->i", v, v).astype(np.float32)
        return cls(v, np.ascontiguousarray(labels, dtype=np.int64), metric, sq)

    @classmethod
    def empty(cls, dimension: int, metric: Metric) -> SideList:
        return cls.build(np.zeros((0, dimension), np.float32), np.zeros(0, np.int64), metric)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def distances(self, queries: npt.NDArray[np.float32]) -> Distances:
        """(q, n) distances from each query to each side-list row."""
        q = unit_rows(queries) if self.metric == "cosine" else queries
        dots = q @ self.vectors.T
        if self.metric == "l2":
            qq = np.einsum("ij,ij->i", q, q)[:, None]
            out: Distances = np.maximum(qq - 2.0 * dots + self.sq_norms[None, :], 0.0)
        else:
            out = 1.0 - dots
        return out.astype(np.float32, copy=False)

    def search(self, queries: npt.NDArray[np.float32], k: int) -> tuple[Labels, Distances]:
        """The min(k, len) nearest side-list rows of each query, nearest first."""
        if not len(self):
            shape = (queries.shape[0], 0)
            return np.zeros(shape, np.int64), np.zeros(shape, np.float32)
        return self.nearest(self.distances(queries), k)

    def nearest(self, d: Distances, k: int) -> tuple[Labels, Distances]:
        """The min(k, len) nearest rows given the (q, len) distances, nearest first."""
        n = len(self)
        take = min(k, n)
        part = (
            np.argpartition(d, take - 1, axis=1)[:, :take]
            if take < n
            else np.tile(np.arange(n), (d.shape[0], 1))
        )
        pd = np.take_along_axis(d, part, axis=1)
        order = np.argsort(pd, axis=1, kind="stable")
        return self.labels[np.take_along_axis(part, order, axis=1)], np.take_along_axis(
            pd, order, axis=1
        )


def merge_into(
    side: SideList,
    queries: npt.NDArray[np.float32],
    graph: tuple[npt.NDArray[np.integer], Distances],
    k: int,
    rowwise: bool = False,
) -> tuple[npt.NDArray[np.integer], Distances]:
    """The graph's answer, merged with the side list only where a side-list row
    is nearer than the graph's k-th result.

    With a few hundred side-list rows among many thousands, that is rare (about
    k * rows / count of the queries), so the usual cost is one small matrix
    product and a comparison, not a top-k selection and a merge."""
    labels, dists = graph
    if not len(side):
        return graph
    if dists.shape[1] < k:  # the graph alone had fewer than k rows to give
        return merge((labels.astype(np.int64), dists), side.search(queries, k), k)
    d = (
        np.concatenate([side.distances(queries[i : i + 1]) for i in range(queries.shape[0])])
        if rowwise
        else side.distances(queries)
    )
    rows = np.flatnonzero((d < dists[:, -1:]).any(axis=1))
    if not rows.size:
        return graph
    out_labels, out_dists = labels.astype(np.int64), dists.copy()
    merged = merge((out_labels[rows], out_dists[rows]), side.nearest(d[rows], k), k)
    out_labels[rows], out_dists[rows] = merged
    return out_labels, out_dists


def merge(
    graph: tuple[Labels, Distances],
    side: tuple[Labels, Distances],
    k: int,
    exclude: Labels | None = None,
) -> tuple[Labels, Distances]:
    """The k nearest of both result sets per query, nearest first (ties: graph first).

    `exclude[i]` (>= 0) is a label query i must not get back: a probe's own row
    when the probe set is replayed.
    """
    labels = np.concatenate([np.asarray(graph[0], dtype=np.int64), side[0]], axis=1)
    dists = np.concatenate([np.asarray(graph[1], dtype=np.float32), side[1]], axis=1)
    if exclude is not None:
        dists = np.where(labels == exclude[:, None], np.float32(np.inf), dists)
    order = np.argsort(dists, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(labels, order, axis=1), np.take_along_axis(dists, order, axis=1)
