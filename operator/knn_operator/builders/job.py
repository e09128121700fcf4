"""The builder Job of one version: runs `knn-build`, reports through its
termination message (knn_contracts.artifact.BuildSummary)."""

from __future__ import annotations

from ..models.clustermodel import ClusterModelSpec, WorkloadSpec
from ..models.knnindex import KnnIndexSpec
from ..settings import Settings
from .common import (
    Manifest,
    Owner,
    artifact_uri,
    container,
    gc_job_name,
    job_name,
    labels,
    metadata,
    pod_spec,
    pod_template,
    resources,
    storage_mounts,
)

BUILDER_CONTAINER = "build"
BUILDER_COMPONENT = "builder"
GC_COMPONENT = "gc"


def build_args(spec: KnnIndexSpec, version: str) -> list[str]:
    v = spec.build.validation
    s = spec.source
    args = [
        "knn-build",
        "--source",
        s.uri,
        "--dimension",
        str(s.dimension),
        "--metric",
        spec.metric,
        "--m",
        str(spec.hnsw.m),
        "--ef-construction",
        str(spec.hnsw.ef_construction),
        # No --ef-search: efSearch belongs to the revision, not the artifact. The
        # build passes if some efSearch reaches minRecall and records the whole
        # curve; the operator checks spec.hnsw.efSearch against it.
        "--probe-queries",
        str(v.probe_queries),
        "--k",
        str(v.k),
        "--min-recall",
        repr(v.min_recall),
        "--version",
        version,
        "--summary-file",
        "/dev/termination-log",
        "--out",
        spec.storage.uri,
    ]
    for flag, value in (
        ("--format", s.format),
        ("--ids", s.ids),
        ("--column", s.column),
        ("--id-column", s.id_column),
        ("--probe-source", v.probe_source),
    ):
        if value:
            args += [flag, value]
    if spec.build.threads:
        args += ["--threads", str(spec.build.threads)]
    return args


def kmeans_build_args(spec: ClusterModelSpec, version: str, previous: str | None) -> list[str]:
    """`knn-build --kind kmeans`: every training parameter is passed explicitly
    (n_init is never left to a library default); `previous` is the stable
    version's artifact, given when the gate compares inertia against it."""
    km, v, s = spec.kmeans, spec.build.validation, spec.source
    which = (
        ["--clusters", str(km.clusters)]
        if km.clusters is not None
        else ["--clusters-range", f"{km.clusters_range.min}:{km.clusters_range.max}"]  # type: ignore[union-attr]
    )
    args = [
        "knn-build",
        "--kind",
        "kmeans",
        "--source",
        s.uri,
        "--dimension",
        str(s.dimension),
        *which,
        "--n-init",
        str(km.n_init),
        "--max-iter",
        str(km.max_iter),
        "--seed",
        str(km.seed),
        "--probe-queries",
        str(v.probe_points),
        "--silhouette-sample",
        str(v.silhouette_sample),
        "--min-cluster-fraction",
        repr(v.min_cluster_fraction),
        "--version",
        version,
        "--summary-file",
        "/dev/termination-log",
        "--out",
        spec.storage.uri,
    ]
    optional: tuple[tuple[str, str | int | float | None], ...] = (
        ("--format", s.format),
        ("--column", s.column),
        ("--probe-source", v.probe_source),
        ("--min-silhouette", v.min_silhouette),
        ("--mini-batch-above", km.mini_batch_above),
        ("--batch-size", km.batch_size),
        ("--threads", spec.build.threads),
    )
    for flag, value in optional:
        if value is not None:
            args += [flag, repr(value) if isinstance(value, float) else str(value)]
    # Without a stable version there is nothing to regress from: the gate is skipped.
    if previous is not None and v.max_inertia_regression is not None:
        args += ["--previous", previous, "--max-inertia-regression", repr(v.max_inertia_regression)]
    return args


def _job(
    owner: Owner,
    spec: WorkloadSpec,
    version: str,
    settings: Settings,
    *,
    name: str,
    component: str,
    command: list[str],
    backoff_limit: int,
    deadline_seconds: int,
    extra_spec: Manifest | None = None,
) -> Manifest:
    """A Job whose pod reaches the index's storage like the builder does."""
    mounts = storage_mounts(spec, settings, read_only=False)
    lbls = labels(owner, version, component)
    main = container(
        BUILDER_CONTAINER,
        spec.build.image or settings.builder_image,
        command,
        settings,
        mounts,
        resources(spec.build.resources, {"cpu": "1", "memory": "1Gi"}),
        terminationMessagePolicy="FallbackToLogsOnError",
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(owner, name, lbls),
        "spec": {
            "backoffLimit": backoff_limit,
            "activeDeadlineSeconds": deadline_seconds,
            **(extra_spec or {}),
            "template": pod_template(
                lbls, {}, pod_spec(main, mounts, restartPolicy="Never"), spec.build.pod
            ),
        },
    }


def builder_job(
    owner: Owner, spec: WorkloadSpec, version: str, settings: Settings, previous: str | None = None
) -> Manifest:
    """The build of one version; `previous` (a ClusterModel's stable artifact) is
    what a k-means build's inertia is compared with."""
    command = (
        kmeans_build_args(spec, version, previous)
        if isinstance(spec, ClusterModelSpec)
        else build_args(spec, version)
    )
    return _job(
        owner,
        spec,
        version,
        settings,
        name=job_name(owner, version),
        component=BUILDER_COMPONENT,
        command=command,
        backoff_limit=spec.build.backoff_limit,
        deadline_seconds=spec.build.timeout_seconds,
    )


def artifact_gc_job(owner: Owner, spec: WorkloadSpec, version: str, settings: Settings) -> Manifest:
    """Deletes one version's artifact from storage (`knn-artifact delete`)."""
    return _job(
        owner,
        spec,
        version,
        settings,
        name=gc_job_name(owner, version),
        component=GC_COMPONENT,
        command=["knn-artifact", "delete", artifact_uri(spec, version)],
        backoff_limit=3,
        deadline_seconds=600,
        # Finished clean-up Jobs carry nothing worth keeping.
        extra_spec={"ttlSecondsAfterFinished": 600},
    )
