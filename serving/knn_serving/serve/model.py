"""A verified, loaded k-means model and the thread that assigns with it.

Assignment is one float64 matrix product per request (knn_serving.centroids),
run on a dedicated thread as hnswlib searches are, so the event loop keeps
parsing requests meanwhile.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from knn_contracts.kmeans import CENTROIDS_FILE, KMEANS_PROBES_FILE, KMeansManifest

from .. import artifact
from ..centroids import nearest_centroid
from ..errors import ArtifactError


@dataclass
class LoadedModel:
    manifest: KMeansManifest
    centroids: npt.NDArray[np.float32]  # (k, d)
    probes: artifact.KMeansProbes

    @classmethod
    def load(cls, directory: Path) -> LoadedModel:
        """Verify every checksum first (an HNSW artifact is refused by name)."""
        manifest = artifact.verify_kmeans(directory)
        k, d = manifest.parameters.clusters, manifest.dimension
        centroids = np.load(directory / CENTROIDS_FILE, allow_pickle=False)
        if centroids.shape != (k, d) or not np.isfinite(centroids).all():
            raise ArtifactError(
                f"{directory}: {CENTROIDS_FILE} holds {centroids.shape}, manifest says "
                f"{k} finite centroids of dimension {d}"
            )
        if len(manifest.cluster_sizes) != k:
            raise ArtifactError(
                f"{directory}: manifest has {len(manifest.cluster_sizes)} cluster sizes for {k}"
            )
        probes = artifact.KMeansProbes.load(directory / KMEANS_PROBES_FILE)
        n = probes.points.shape[0]
        if probes.assignments.shape != (n,) or (n and probes.points.shape[1] != d):
            raise ArtifactError(f"{directory}: {KMEANS_PROBES_FILE} does not match the model")
        return cls(manifest, np.ascontiguousarray(centroids, dtype=np.float32), probes)


class Assigner:
    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="assign")

    async def assign(
        self, vectors: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool, nearest_centroid, vectors, self.loaded.centroids
        )

    def close(self) -> None:
        self._pool.shutdown(wait=True)
