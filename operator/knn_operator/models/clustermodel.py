"""The ClusterModel custom resource (DESIGN section 2): a k-means model with the
same lifecycle as a KnnIndex. Field names are the contract.

Everything but the model itself is a KnnIndex's: the source, storage, serving,
rollout and history blocks are the same classes, so the one reconciler plans
both kinds. Fields of those blocks that only an index can use (source.ids,
recall thresholds) are refused by CEL with a message naming them.
"""

from __future__ import annotations

from pydantic import Field

from .common import SOURCE_URI_PATTERN, Model, cel, validations
from .knnindex import (
    History,
    JobSettings,
    KnnIndexSpec,
    Rollout,
    Serving,
    Source,
    Storage,
    WorkloadStatus,
)
from .rebuild import ON_DRIFT_NEEDS_PROMETHEUS, Rebuild


class ClustersRange(Model):
    min: int = Field(ge=2, le=100000, description="Smallest k tried")
    max: int = Field(ge=2, le=100000, description="Largest k tried")

    model_config = validations(
        cel("self.min <= self.max", "kmeans.clustersRange.min must not exceed max"),
    )


class KMeans(Model):
    clusters: int | None = Field(
        default=None, ge=2, le=100000, description="k; or give clustersRange"
    )
    clusters_range: ClustersRange | None = Field(
        default=None,
        description="Try every k in [min, max] and keep the best silhouette (the elbow "
        "curve is recorded in the artifact)",
    )
    n_init: int = Field(default=3, ge=1, le=1000, description="k-means++ restarts per k")
    max_iter: int = Field(default=300, ge=1, le=100000, description="Iterations per restart")
    seed: int = Field(default=42, ge=0, le=2**31 - 1, description="Random seed (reproducible)")
    mini_batch_above: int | None = Field(
        default=None,
        ge=0,
        description="Training rows above which MiniBatchKMeans runs; default: the builder's",
    )
    batch_size: int | None = Field(
        default=None, ge=1, le=1 << 20, description="MiniBatchKMeans batch size"
    )

    model_config = validations(
        cel(
            "has(self.clusters) != has(self.clustersRange)",
            "give exactly one of kmeans.clusters or kmeans.clustersRange",
        ),
    )


class ClusterValidation(Model):
    probe_points: int = Field(
        default=500,
        ge=1,
        le=100000,
        description="Rows held out of training, replayed by the server (probe inertia)",
    )
    probe_source: str | None = Field(
        default=None,
        pattern=SOURCE_URI_PATTERN,
        max_length=2048,
        description="Probe points from this file instead of held-out rows",
    )
    silhouette_sample: int = Field(
        default=5000,
        ge=3,
        le=100000,
        description="Training rows the silhouette is computed on (its cost is rows squared)",
    )
    min_silhouette: float | None = Field(
        default=None, ge=-1.0, le=1.0, description="Gate: least silhouette; default: not gated"
    )
    min_cluster_fraction: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="Gate: every cluster holds at least this fraction of an even share "
        "(training rows / k); empty clusters always fail",
    )
    max_inertia_regression: float | None = Field(
        default=None,
        ge=0.0,
        le=1000.0,
        description="Gate once a version serves: most relative growth of the mean squared "
        "distance on the stable version's probe points (e.g. 0.1)",
    )


class ClusterBuild(JobSettings):
    validation: ClusterValidation = Field(
        default_factory=ClusterValidation,
        description="The silhouette, cluster-size and inertia gate before any traffic",
    )


_INDEX_ONLY_THRESHOLDS = ("minRecall", "minLiveRecall", "maxRecallDrop")


class ClusterModelSpec(Model):
    source: Source = Field(description="The vectors to train on (source.ids does not apply)")
    kmeans: KMeans = Field(description="k and the training parameters")
    build: ClusterBuild = Field(
        default_factory=ClusterBuild, description="The training Job and its gate"
    )
    storage: Storage = Field(description="Where trained versions (artifacts) are kept")
    serving: Serving = Field(default_factory=Serving, description="The serving Deployments")
    rollout: Rollout = Field(
        default_factory=Rollout, description="How a new revision earns its traffic"
    )
    history: History = Field(default_factory=History, description="Versions kept")
    rebuild: Rebuild = Field(
        default_factory=Rebuild,
        description="Retraining the same inputs: on a schedule, on drift (default: "
        "knn_cluster_drift_psi of the stable), or by a token",
    )

    model_config = validations(
        ON_DRIFT_NEEDS_PROMETHEUS,
        cel(
            "!has(self.source.ids) && !has(self.source.idColumn)",
            "source.ids and source.idColumn do not apply to a ClusterModel "
            "(a model answers with cluster ids)",
            field_path=".source",
        ),
        cel(
            "!has(self.source.column) || "
            "(has(self.source.format) && self.source.format == 'parquet') || "
            "self.source.uri.endsWith('.parquet')",
            "source.column applies only to parquet sources",
            field_path=".source.column",
        ),
        cel(
            "!has(self.rollout.analysis) || !("
            + " || ".join(
                f"has(self.rollout.analysis.thresholds.{t})" for t in _INDEX_ONLY_THRESHOLDS
            )
            + ")",
            "rollout.analysis.thresholds minRecall, minLiveRecall and maxRecallDrop apply to a "
            "KnnIndex only; a ClusterModel is judged on maxProbeInertia, maxInertiaRatio and "
            "minProbeSilhouette",
            field_path=".rollout.analysis.thresholds",
        ),
        cel(
            "!has(self.kmeans.clusters) || "
            "self.kmeans.clusters < self.build.validation.silhouetteSample",
            "kmeans.clusters must be below build.validation.silhouetteSample",
            field_path=".kmeans.clusters",
        ),
    )


class ClusterModelStatus(WorkloadStatus):
    clusters: int | None = Field(default=None, description="k of the stable version")
    silhouette: float | None = Field(default=None, description="the stable version's silhouette")
    inertia: float | None = Field(default=None, description="the stable version's training inertia")


# The spec of either kind, as the kind-generic planner and builders take it.
WorkloadSpec = KnnIndexSpec | ClusterModelSpec
