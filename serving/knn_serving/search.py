"""One k-NN search over an artifact's graph and its exact side list.

The builder's validation, the server's answers and its probe replay all go
through `knn`, so the recall the gate and the gauge report is the recall of the
very code path that answers users.
"""

from __future__ import annotations

import hnswlib
import numpy as np
import numpy.typing as npt

from .sidelist import Distances, Labels, SideList, merge, merge_into


def knn(
    index: hnswlib.Index,
    side: SideList,
    queries: npt.NDArray[np.float32],
    k: int,
    threads: int = 1,
    exclude: Labels | None = None,
    rowwise: bool = False,
) -> tuple[npt.NDArray[np.integer], Distances]:
    """Top-k labels and distances, nearest first; `exclude[i]` (>= 0) is a label
    that query i must not get back (a probe's own row); `rowwise`: each row's
    distances exactly as if it were searched alone (sidelist.merge_into)."""
    extra = 1 if exclude is not None and (exclude >= 0).any() else 0
    graph_k = min(k + extra, index.get_current_count())
    labels, dists = index.knn_query(queries, k=graph_k, num_threads=threads)
    if not extra:
        return merge_into(side, queries, (labels, dists), k, rowwise)
    return merge((labels, dists), side.search(queries, k + extra), k, exclude)
