"""A verified, loaded artifact and the one thread that queries it.

hnswlib's search breadth (ef) is a property of the index, not of a query, so
all searches run on a single dedicated thread (searchthread.py), which also
answers concurrent single queries with one batched call. hnswlib releases the
GIL, so the event loop keeps parsing HTTP while that thread searches; batches
use all usable cores inside hnswlib.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import hnswlib
import numpy as np
import numpy.typing as npt
from knn_contracts.artifact import IDS_FILE, INDEX_FILE, PROBES_FILE, Manifest

from .. import artifact
from ..build.pipeline import HNSW_SPACE
from ..errors import ArtifactError
from ..exact import recall_at_k
from ..search import knn
from ..sidelist import SideList
from .searchthread import SearchThread

log = logging.getLogger("knn-serve")


@dataclass
class LoadedIndex:
    manifest: Manifest
    index: hnswlib.Index
    ids: npt.NDArray[np.int64] | npt.NDArray[np.str_]
    probes: artifact.Probes
    ef_search: int
    side: SideList  # rows kept out of the graph (format 2), searched exactly

    @property
    def unbiased_probes(self) -> bool:
        """False for format-1 artifacts: their probes are rows in the graph, queried
        leave-one-out, and report far higher recall than new queries get."""
        return self.manifest.validation.method != "leave-one-out"

    @classmethod
    def load(cls, directory: Path, ef_search: int | None = None) -> LoadedIndex:
        """Verify every checksum first: a corrupt artifact never serves."""
        manifest = artifact.verify(directory)
        index = hnswlib.Index(space=HNSW_SPACE[manifest.metric], dim=manifest.dimension)
        index.load_index(str(directory / INDEX_FILE), max_elements=manifest.count)
        held_out = manifest.validation.held_out_rows
        if index.get_current_count() != manifest.count - held_out:
            raise ArtifactError(
                f"{directory}: index holds {index.get_current_count()} vectors, "
                f"manifest says {manifest.count} of which {held_out} are held out of the graph"
            )
        ef = ef_search or manifest.parameters.ef_search
        index.set_ef(ef)
        ids = np.load(directory / IDS_FILE, allow_pickle=False)
        if ids.shape != (manifest.count,):
            raise ArtifactError(
                f"{directory}: {IDS_FILE} holds {ids.shape[0]} ids for {manifest.count} vectors"
            )
        probes = artifact.Probes.load(directory / PROBES_FILE)
        side = _side_list(directory, manifest, probes)
        return cls(manifest, index, ids, probes, ef, side)


def _side_list(directory: Path, manifest: Manifest, probes: artifact.Probes) -> SideList:
    held_out = manifest.validation.held_out_rows
    if held_out == 0:
        return SideList.empty(manifest.dimension, manifest.metric)
    rows = probes.self_labels >= 0
    labels = probes.self_labels[rows]
    if labels.shape[0] != held_out or np.unique(labels).shape[0] != held_out:
        raise ArtifactError(
            f"{directory}: {PROBES_FILE} holds {labels.shape[0]} held-out rows, "
            f"manifest says {held_out}"
        )
    if labels.min() < 0 or labels.max() >= manifest.count:
        raise ArtifactError(f"{directory}: {PROBES_FILE} names rows outside the index")
    return SideList.build(probes.queries[rows], labels, manifest.metric)


@dataclass(frozen=True)
class Replay:
    recall: float
    nearest: npt.NDArray[np.float64]  # each probe's served nearest distance


class Searcher:
    def __init__(self, loaded: LoadedIndex, batch_threads: int) -> None:
        self.loaded = loaded
        self.default_ef = loaded.ef_search
        self.batch_threads = batch_threads
        # Coalesced single queries stay on one thread (the event loop needs the other
        # core) and get exactly the answer each would get alone.
        self._thread = SearchThread(functools.partial(self._search, threads=1, rowwise=True))

    def _search(
        self,
        vectors: npt.NDArray[np.float32],
        k: int,
        ef: int | None,
        threads: int,
        rowwise: bool = False,
    ) -> tuple[npt.NDArray[np.integer], npt.NDArray[np.float32]]:
        index, side = self.loaded.index, self.loaded.side
        if ef is None or ef == self.default_ef:
            return knn(index, side, vectors, k, threads, rowwise=rowwise)
        index.set_ef(ef)
        try:
            return knn(index, side, vectors, k, threads, rowwise=rowwise)
        finally:
            index.set_ef(self.default_ef)

    async def search(
        self, vectors: npt.NDArray[np.float32], k: int, ef: int | None
    ) -> tuple[npt.NDArray[np.integer], npt.NDArray[np.float32]]:
        if vectors.shape[0] == 1:
            return await self._thread.single(vectors, k, ef)
        return await self._thread.call(
            functools.partial(self._search, vectors, k, ef, self.batch_threads)
        )

    def _timed_probes(
        self, start: int, stop: int, k: int
    ) -> tuple[list[npt.NDArray[np.int64]], list[float], list[float]]:
        """Probes start..stop one at a time, each timed: the replay's own latency
        (search only), for revisions with too little live traffic to judge; and
        each probe's served nearest distance."""
        p, index, side = self.loaded.probes, self.loaded.index, self.loaded.side
        found, seconds, nearest = [], [], []
        for i in range(start, stop):
            t0 = time.perf_counter()
            labels, dist = knn(index, side, p.queries[i : i + 1], k, 1, p.self_labels[i : i + 1])
            seconds.append(time.perf_counter() - t0)
            found.append(np.asarray(labels, dtype=np.int64))
            nearest.append(float(dist[0, 0]))
        return found, seconds, nearest

    async def replay_probes(
        self, chunk: int = 8, observe: Callable[[float], None] | None = None
    ) -> Replay:
        """Recall@k of the live index on its probe set, at the serving ef; each
        probe's search time goes to `observe`.

        The probes go to the search thread a few at a time: live queries queued
        meanwhile run between two chunks instead of waiting for the whole set
        (500 probes take ~100 ms, which would show in every periodic p99)."""
        p = self.loaded.probes
        k = int(p.truth.shape[1])
        found: list[npt.NDArray[np.int64]] = []
        nearest: list[float] = []
        for i in range(0, len(p.queries), chunk):
            stop = min(i + chunk, len(p.queries))
            rows, seconds, first = await self._thread.call(
                functools.partial(self._timed_probes, i, stop, k)
            )
            found += rows
            nearest += first
            if observe is not None:
                for s in seconds:
                    observe(s)
        return Replay(recall_at_k(np.concatenate(found), p.truth), np.asarray(nearest))

    def close(self) -> None:
        self._thread.close()
