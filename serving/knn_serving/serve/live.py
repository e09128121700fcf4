"""Live recall: a sample of real queries checked by exact search in the background.

The request path only draws a random number and, for a sampled query, puts a
reference to it on a bounded queue (never blocks: a full queue drops the sample
and counts it). One daemon thread drains the queue in batches, scans every
vector once per batch (the graph's, memory-mapped from the artifact, and the side
list's) and counts relevant results found and expected. It sleeps after each batch
so that its CPU time stays within `cpu_budget` of one core.

Counters, not a gauge: recall over any window and any set of pods and workers is
sum(rate(found)) / sum(rate(expected)) in PromQL.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from knn_contracts.artifact import Metric

from ..exact import exact_topk_distances
from ..hnswfile import GraphVectors
from ..sidelist import SideList, merge

log = logging.getLogger("knn-serve")

# Rows scanned per block: bounds the temporary copy of a strided block (4 MiB), so
# the check adds little to the heap (freed blocks are not always returned to the OS).
_BLOCK_BYTES = 4 << 20
_MAX_BATCH = 64
# At most one scan a second: a scan streams every vector through the caches and
# evicts the graph the search thread works on, so fewer scans with more samples
# each cost the searches less than many small ones (a scan of 64 queries costs
# about what a scan of one does: it is bound by memory bandwidth).
_MIN_SCAN_INTERVAL = 1.0


@dataclass(frozen=True)
class LiveSettings:
    rate: float = 0.01  # fraction of queried vectors sampled
    cpu_budget: float = 0.02  # fraction of one core the checker may use
    queue_size: int = 256


@dataclass(frozen=True)
class Sample:
    query: npt.NDArray[np.float32]  # (dim,)
    found: npt.NDArray[np.int64]  # labels served, nearest first
    k: int


# found, expected, samples (one call per checked batch) and dropped (per sample).
Record = Callable[[int, int, int], None]
Drop = Callable[[], None]


def exact_labels(
    graph: GraphVectors, side: SideList, metric: Metric, queries: npt.NDArray[np.float32], k: int
) -> npt.NDArray[np.int64]:
    """Exact top-k labels of each query over graph and side-list rows, nearest first:
    one blocked pass over the mapped vectors (knn_serving.exact), merged with the
    side list by hnswlib's distances."""
    take = min(k, len(graph))
    rows, dists = exact_topk_distances(
        graph.vectors, queries, take, metric, block_bytes=_BLOCK_BYTES
    )
    labels = graph.labels[rows].astype(np.int64)
    if not len(side):
        return labels
    merged, _ = merge((labels, dists), side.search(queries, k), k)
    return merged


def hits(sample: Sample, exact: npt.NDArray[np.int64]) -> int:
    return len(set(sample.found[: sample.k].tolist()) & set(exact[: sample.k].tolist()))


class LiveRecall:
    """The sampler (`offer`, on the request path) and its checker thread."""

    def __init__(
        self,
        settings: LiveSettings,
        graph: GraphVectors,
        side: SideList,
        metric: Metric,
        record: Record,
        drop: Drop,
    ) -> None:
        self.settings = settings
        self.graph, self.side, self.metric = graph, side, metric
        self._record, self._drop = record, drop
        self._queue: queue.Queue[Sample | None] = queue.Queue(maxsize=settings.queue_size)
        self._random = random.random
        self._stop = threading.Event()  # wakes the checker from its budget sleep
        self._thread = threading.Thread(target=self._run, name="live-recall", daemon=True)
        self._thread.start()

    def offer(
        self, queries: npt.NDArray[np.float32], labels: npt.NDArray[np.integer], k: int
    ) -> None:
        """Maybe sample some rows of an answered request. Cheap; never blocks."""
        rate = self.settings.rate
        if queries.shape[0] == 1:
            if self._random() >= rate:
                return
            picked: list[int] | npt.NDArray[np.intp] = [0]
        else:
            picked = np.flatnonzero(np.random.random(queries.shape[0]) < rate)
        for i in picked:
            sample = Sample(queries[i], np.asarray(labels[i], dtype=np.int64), k)
            try:
                self._queue.put_nowait(sample)
            except queue.Full:
                self._drop()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the checker; pending samples are not worth a slow exit."""
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        self._thread.join(timeout)

    def _batch(self) -> list[Sample] | None:
        first = self._queue.get()
        if first is None:
            return None
        batch = [first]
        while len(batch) < _MAX_BATCH:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                self._queue.put(None)  # seen again after this batch
                break
            batch.append(nxt)
        return batch

    def _run(self) -> None:
        # Lowest CPU priority for this thread only (Linux: setpriority on a thread id
        # affects that thread): under contention the search thread and the event
        # loop go first, and the budget below caps what is left.
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        budget = self.settings.cpu_budget
        while (batch := self._batch()) is not None:
            cpu = time.thread_time()
            try:
                k = max(s.k for s in batch)
                exact = exact_labels(
                    self.graph, self.side, self.metric, np.stack([s.query for s in batch]), k
                )
                found = sum(hits(s, e) for s, e in zip(batch, exact, strict=True))
                self._record(found, sum(s.k for s in batch), len(batch))
            except Exception:  # a bad batch must not end live recall for good
                log.exception("live recall check failed")
            used = time.thread_time() - cpu
            # Idle long enough that used / (used + idle) <= budget.
            if self._stop.wait(max(used * (1.0 / budget - 1.0), _MIN_SCAN_INTERVAL - used)):
                return
