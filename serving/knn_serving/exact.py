"""Exact top-k by blocked brute force, and recall@k. Pure numpy, no I/O.

Memory stays bounded by `block_bytes` whatever the data size: the data is
scanned in row blocks and a running top-k is merged per block.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from knn_contracts.artifact import Metric

DEFAULT_BLOCK_BYTES = 256 << 20


def unit_rows(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Each row scaled to length 1 (a zero row stays zero)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    unit: npt.NDArray[np.float32] = (x / norms).astype(np.float32, copy=False)
    return unit


def exact_topk(
    data: npt.NDArray[np.generic],
    queries: npt.NDArray[np.float32],
    k: int,
    metric: Metric,
    *,
    exclude: npt.NDArray[np.int64] | None = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> npt.NDArray[np.int64]:
    """Row labels of the k nearest data rows for each query, nearest first.

    `exclude[i]` (if ≥ 0) is a data row that query i must not return: the
    query's own row when probes are taken from the data (leave-one-out).
    """
    rows, _ = exact_topk_distances(
        data, queries, k, metric, exclude=exclude, block_bytes=block_bytes
    )
    return rows


def exact_topk_distances(
    data: npt.NDArray[np.generic],
    queries: npt.NDArray[np.float32],
    k: int,
    metric: Metric,
    *,
    exclude: npt.NDArray[np.int64] | None = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """exact_topk, with hnswlib's distances (squared L2; 1 - inner product;
    1 - cosine similarity), so the rows merge with an index's or a side list's."""
    n = data.shape[0]
    q = queries.shape[0]
    if k > n - (1 if exclude is not None and (exclude >= 0).any() else 0):
        raise ValueError(f"k={k} exceeds the {n} vectors available")
    qs = np.ascontiguousarray(queries, dtype=np.float32)
    if metric == "cosine":
        qs = unit_rows(qs)
    best_d = np.full((q, k), np.inf, dtype=np.float32)
    best_i = np.full((q, k), -1, dtype=np.int64)
    rows = max(k, block_bytes // (4 * max(q, 1) * 2 + 4 * data.shape[1]))
    rows_idx = np.arange(q)
    for start in range(0, n, rows):
        block = np.asarray(data[start : start + rows], dtype=np.float32)
        if metric == "cosine":
            block = unit_rows(block)
        dots = qs @ block.T  # (q, b)
        if metric == "l2":
            dist = np.einsum("ij,ij->i", block, block)[None, :] - 2.0 * dots
        else:
            dist = -dots
        if exclude is not None:
            local = exclude - start
            hit = (local >= 0) & (local < block.shape[0])
            dist[rows_idx[hit], local[hit]] = np.inf
        b = dist.shape[1]
        take = min(k, b)
        part = (
            np.argpartition(dist, take - 1, axis=1)[:, :take]
            if take < b
            else np.tile(np.arange(b), (q, 1))
        )
        cand_d = np.take_along_axis(dist, part, axis=1)
        all_d = np.concatenate([best_d, cand_d], axis=1)
        all_i = np.concatenate([best_i, part.astype(np.int64) + start], axis=1)
        sel = np.argpartition(all_d, k - 1, axis=1)[:, :k]
        best_d = np.take_along_axis(all_d, sel, axis=1)
        best_i = np.take_along_axis(all_i, sel, axis=1)
    order = np.argsort(best_d, axis=1, kind="stable")
    # The scan ranks by a distance without the query's own constant term.
    offset = np.einsum("ij,ij->i", qs, qs)[:, None] if metric == "l2" else 1.0
    dists = (np.take_along_axis(best_d, order, axis=1) + offset).astype(np.float32)
    return np.take_along_axis(best_i, order, axis=1), dists


def drop_self(
    labels: npt.NDArray[np.int64], self_labels: npt.NDArray[np.int64], k: int
) -> npt.NDArray[np.int64]:
    """From k+1 results per row, drop the query's own label (or the last one) to keep k."""
    out = np.empty((labels.shape[0], k), dtype=np.int64)
    for i, (row, own) in enumerate(zip(labels, self_labels, strict=True)):
        kept = row[row != own] if own >= 0 else row
        out[i] = kept[:k]
    return out


def recall_at_k(found: npt.NDArray[np.int64], truth: npt.NDArray[np.int64]) -> float:
    """Mean fraction of each row's true top-k that was found (order ignored)."""
    if truth.size == 0:
        return 1.0
    k = truth.shape[1]
    hits = sum(
        np.intersect1d(f[:k], t, assume_unique=False).size
        for f, t in zip(found, truth, strict=True)
    )
    return float(hits) / float(truth.shape[0] * k)
