"""The builder Job of one version: runs `knn-build`, reports through its
termination message (knn_contracts.artifact.BuildSummary)."""

from __future__ import annotations

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


def _job(
    owner: Owner,
    spec: KnnIndexSpec,
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


def builder_job(owner: Owner, spec: KnnIndexSpec, version: str, settings: Settings) -> Manifest:
    return _job(
        owner,
        spec,
        version,
        settings,
        name=job_name(owner, version),
        component=BUILDER_COMPONENT,
        command=build_args(spec, version),
        backoff_limit=spec.build.backoff_limit,
        deadline_seconds=spec.build.timeout_seconds,
    )


def artifact_gc_job(owner: Owner, spec: KnnIndexSpec, version: str, settings: Settings) -> Manifest:
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
