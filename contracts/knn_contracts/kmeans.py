"""The k-means artifact contract (`knn-build --kind kmeans`, served by `knn-serve`).

Layout::

    <version>/manifest.json   KMeansManifest below; sha256 of every other file
    <version>/centroids.npy   (clusters, dimension) float32; row i is cluster i
    <version>/probes.npz      `points` (held-out rows or --probe-source vectors),
                              `assignments` (exact nearest centroid, int64),
                              `distances` (Euclidean distance to it, float64)

Written and published by the same step as an HNSW artifact (atomic rename,
manifest last). `kind` tells the two apart: each reader refuses the other's.

Distances are Euclidean (not squared): that is what `/v1/assign` returns and
what the distance histogram observes. Inertia is, as in scikit-learn, the sum
of *squared* distances; `probe_inertia_mean` divides by the probe count so that
two versions' probe sets of different size compare.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .artifact import FORMAT_VERSION, SourceInfo

CENTROIDS_FILE = "centroids.npy"
KMEANS_PROBES_FILE = "probes.npz"
KMEANS_FILES = (CENTROIDS_FILE, KMEANS_PROBES_FILE)

Algorithm = Literal["full", "minibatch"]


class KMeansParameters(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    clusters: int = Field(ge=2, description="k of the model served")
    # What was asked: one k, or the range searched by silhouette.
    clusters_min: int = Field(ge=2)
    clusters_max: int = Field(ge=2)
    algorithm: Algorithm
    mini_batch_above: int = Field(ge=0, description="training rows above which minibatch runs")
    batch_size: int | None = Field(default=None, ge=1, description="minibatch only")
    n_init: int = Field(ge=1)
    max_iter: int = Field(ge=1)
    seed: int
    init: Literal["k-means++"] = "k-means++"
    silhouette_sample: int = Field(ge=2, description="bound on the silhouette's sample")


class ElbowPoint(BaseModel):
    """One k of the search: training inertia and silhouette on the bounded sample."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    k: int = Field(ge=2)
    inertia: float = Field(ge=0.0)
    silhouette: float = Field(ge=-1.0, le=1.0)
    seconds: float = Field(ge=0.0)


class DistanceSummary(BaseModel):
    """The distribution of distance-to-centroid over the training rows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mean: float = Field(ge=0.0)
    quantiles: dict[str, float] = Field(description="'0.5' -> distance, ...")
    # Upper bounds of the server's distance histogram, chosen from this
    # distribution so its buckets resolve the model's own scale.
    buckets: list[float]
    # Training rows per bucket (le each bound; the last entry is above the last
    # bound): the same histogram as the server's, for training.
    counts: list[int] = Field(default_factory=list)


class KMeansValidation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    training_rows: int = Field(ge=1)
    probe_points: int = Field(ge=0)
    method: Literal["held-out", "probe-source"]
    probe_source: str | None = None
    probe_source_sha256: str | None = None
    inertia: float = Field(ge=0.0, description="sum of squared distances, training rows")
    silhouette: float = Field(ge=-1.0, le=1.0)
    silhouette_rows: int = Field(ge=2, description="rows in the silhouette's sample")
    probe_inertia: float = Field(ge=0.0)
    probe_inertia_mean: float = Field(ge=0.0)
    min_silhouette: float | None = None
    min_cluster_fraction: float = Field(ge=0.0, le=1.0)
    # Against --previous: the previous model's and this one's mean squared
    # distance on the previous version's probe points.
    previous: str | None = None
    previous_probe_inertia_mean: float | None = None
    this_on_previous_probes_mean: float | None = None
    max_inertia_regression: float | None = None
    elbow: list[ElbowPoint] = Field(default_factory=list, description="one point per k tried")


class KMeansManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: Literal[2] = FORMAT_VERSION
    kind: Literal["kmeans"] = "kmeans"
    version: str
    dimension: int = Field(ge=1)
    metric: Literal["l2"] = "l2"
    count: int = Field(ge=1, description="rows in the source")
    parameters: KMeansParameters
    source: SourceInfo
    validation: KMeansValidation
    # Training rows per cluster, index = cluster id; the PSI baseline.
    cluster_sizes: list[int]
    distances: DistanceSummary
    build_seconds: float = Field(ge=0.0)
    created: str
    files: dict[str, str] = Field(description="file name -> sha256 hex digest")
