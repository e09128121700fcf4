"""A verified, loaded artifact and the one thread that queries it.

hnswlib's search breadth (ef) is a property of the index, not of a query, so
all searches run on a single dedicated thread: a request's own `ef` is set and
restored there without racing another request. hnswlib releases the GIL, so
the event loop keeps parsing HTTP while that thread searches; batches use
all usable cores inside hnswlib.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import hnswlib
import numpy as np
import numpy.typing as npt
from knn_contracts.artifact import IDS_FILE, INDEX_FILE, PROBES_FILE, Manifest

from .. import artifact
from ..build.pipeline import HNSW_SPACE, query_index
from ..errors import ArtifactError
from ..exact import recall_at_k

log = logging.getLogger("knn-serve")


@dataclass
class LoadedIndex:
    manifest: Manifest
    index: hnswlib.Index
    ids: npt.NDArray[np.int64] | npt.NDArray[np.str_]
    probes: artifact.Probes
    ef_search: int

    @classmethod
    def load(cls, directory: Path, ef_search: int | None = None) -> LoadedIndex:
        """Verify every checksum first: a corrupt artifact never serves."""
        manifest = artifact.verify(directory)
        index = hnswlib.Index(space=HNSW_SPACE[manifest.metric], dim=manifest.dimension)
        index.load_index(str(directory / INDEX_FILE), max_elements=manifest.count)
        if index.get_current_count() != manifest.count:
            raise ArtifactError(
                f"{directory}: index holds {index.get_current_count()} vectors, "
                f"manifest says {manifest.count}"
            )
        ef = ef_search or manifest.parameters.ef_search
        index.set_ef(ef)
        ids = np.load(directory / IDS_FILE, allow_pickle=False)
        if ids.shape != (manifest.count,):
            raise ArtifactError(
                f"{directory}: {IDS_FILE} holds {ids.shape[0]} ids for {manifest.count} vectors"
            )
        probes = artifact.Probes.load(directory / PROBES_FILE)
        return cls(manifest, index, ids, probes, ef)


class Searcher:
    def __init__(self, loaded: LoadedIndex, batch_threads: int) -> None:
        self.loaded = loaded
        self.default_ef = loaded.ef_search
        self.batch_threads = batch_threads
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hnsw")

    def _search(
        self, vectors: npt.NDArray[np.float32], k: int, ef: int | None
    ) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32]]:
        index = self.loaded.index
        threads = 1 if vectors.shape[0] == 1 else self.batch_threads
        if ef is None or ef == self.default_ef:
            return index.knn_query(vectors, k=k, num_threads=threads)  # type: ignore[no-any-return]
        index.set_ef(ef)
        try:
            return index.knn_query(vectors, k=k, num_threads=threads)  # type: ignore[no-any-return]
        finally:
            index.set_ef(self.default_ef)

    async def search(
        self, vectors: npt.NDArray[np.float32], k: int, ef: int | None
    ) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32]]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._search, vectors, k, ef)

    async def replay_probes(self, chunk: int = 8) -> float:
        """Recall@k of the live index on its probe set, at the serving ef.

        The probes go to the search thread a few at a time: live queries queued
        meanwhile run between two chunks instead of waiting for the whole set
        (500 probes take ~100 ms, which would show in every periodic p99)."""
        loop = asyncio.get_running_loop()
        p = self.loaded.probes
        k = p.truth.shape[1]
        found = []
        for i in range(0, len(p.queries), chunk):
            found.append(
                await loop.run_in_executor(
                    self._pool,
                    query_index,
                    self.loaded.index,
                    p.queries[i : i + chunk],
                    k,
                    p.self_labels[i : i + chunk],
                    1,
                )
            )
        return recall_at_k(np.concatenate(found), p.truth)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
