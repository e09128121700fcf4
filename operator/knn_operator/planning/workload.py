"""What the planner needs to know about what a kind serves: an HNSW index
(KnnIndex) or a k-means model (ClusterModel). Everything else it plans (builds,
rollout, revisions, sizes, retention, status) is the same for both. Pure.

A workload names a version, makes the builder Job, reads a finished build's
summary into its record, gives the serving-time parameter a revision carries
(an index's efSearch; a model has none), judges it, and fills in the status
fields only its kind has.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from knn_contracts import status as cond_names
from knn_contracts.artifact import BuildSummary

from ..builders.common import Manifest, Owner
from ..builders.job import builder_job
from ..efsearch import Verdict, judge, recorded_recall
from ..models.clustermodel import ClusterModelSpec, ClusterModelStatus, WorkloadSpec
from ..models.knnindex import (
    BuildRecord,
    KnnIndexSpec,
    KnnIndexStatus,
    RecallPoint,
    RevisionRecord,
    WorkloadStatus,
)
from ..settings import Settings
from ..versioning import kmeans_version_of, version_of


def _index(spec: WorkloadSpec) -> KnnIndexSpec:
    if not isinstance(spec, KnnIndexSpec):
        raise TypeError(f"an index workload was given a {type(spec).__name__}")
    return spec


def _model(spec: WorkloadSpec) -> ClusterModelSpec:
    if not isinstance(spec, ClusterModelSpec):
        raise TypeError(f"a model workload was given a {type(spec).__name__}")
    return spec


class Workload(Protocol):
    def version(
        self, spec: WorkloadSpec, rebuild_annotation: str | None, trigger: str | None = None
    ) -> str: ...

    def builder_job(
        self,
        owner: Owner,
        spec: WorkloadSpec,
        status: WorkloadStatus,
        version: str,
        settings: Settings,
    ) -> Manifest: ...

    def built(
        self, spec: WorkloadSpec, summary: BuildSummary, base: BuildRecord
    ) -> tuple[BuildRecord, str]:
        """The succeeded build's record (`base` carries version, times and artifact)
        and the BuildSucceeded Event's message."""
        ...

    def serving_parameter(self, spec: WorkloadSpec) -> int | None:
        """What a revision serves with besides its artifact (an index's efSearch)."""
        ...

    def verdict(self, spec: WorkloadSpec, rec: BuildRecord) -> Verdict | None:
        """Whether the serving spec is accepted for a built version (None: not built)."""
        ...

    def status(
        self,
        common: Mapping[str, Any],
        old: WorkloadStatus,
        stable_build: BuildRecord | None,
        stable_rev: RevisionRecord | None,
    ) -> WorkloadStatus: ...


@dataclass(frozen=True)
class HnswIndex:
    def version(
        self, spec: WorkloadSpec, rebuild_annotation: str | None, trigger: str | None = None
    ) -> str:
        return version_of(_index(spec), rebuild_annotation, trigger)

    def builder_job(
        self,
        owner: Owner,
        spec: WorkloadSpec,
        status: WorkloadStatus,
        version: str,
        settings: Settings,
    ) -> Manifest:
        return builder_job(owner, _index(spec), version, settings)

    def built(
        self, spec: WorkloadSpec, summary: BuildSummary, base: BuildRecord
    ) -> tuple[BuildRecord, str]:
        s = summary
        rec = base.model_copy(
            update={
                "vectors": s.vectors,
                "recall": s.recall,
                "ef_search": s.ef_search,
                "recall_curve": [
                    RecallPoint(ef_search=c.ef_search, recall=c.recall, latency_us=c.latency_us)
                    for c in s.recall_curve()
                ],
                "build_seconds": s.build_seconds,
            }
        )
        ef = _index(spec).hnsw.ef_search
        at = recorded_recall(rec, ef)
        recall = f"recall {at} at efSearch {ef}" if at is not None else f"recall {s.recall}"
        return rec, f"version {rec.version}: {s.vectors} vectors, {recall}, {s.build_seconds}s"

    def serving_parameter(self, spec: WorkloadSpec) -> int | None:
        return _index(spec).hnsw.ef_search

    def verdict(self, spec: WorkloadSpec, rec: BuildRecord) -> Verdict | None:
        if rec.outcome != "Succeeded":
            return None
        s = _index(spec)
        return judge(rec, s.hnsw.ef_search, s.build.validation.min_recall)

    def status(
        self,
        common: Mapping[str, Any],
        old: WorkloadStatus,
        stable_build: BuildRecord | None,
        stable_rev: RevisionRecord | None,
    ) -> WorkloadStatus:
        ef = stable_rev.ef_search if stable_rev else None
        recall = recorded_recall(stable_build, ef) if stable_build and ef is not None else None
        return KnnIndexStatus(**common, recall=recall, serving_ef_search=ef)


@dataclass(frozen=True)
class KMeansModel:
    def version(
        self, spec: WorkloadSpec, rebuild_annotation: str | None, trigger: str | None = None
    ) -> str:
        return kmeans_version_of(_model(spec), rebuild_annotation, trigger)

    def builder_job(
        self,
        owner: Owner,
        spec: WorkloadSpec,
        status: WorkloadStatus,
        version: str,
        settings: Settings,
    ) -> Manifest:
        # The gate's inertia regression is measured against what serves now.
        stable = next((b for b in status.builds if b.version == status.stable_version), None)
        previous = stable.artifact if stable is not None else None
        return builder_job(owner, _model(spec), version, settings, previous)

    def built(
        self, spec: WorkloadSpec, summary: BuildSummary, base: BuildRecord
    ) -> tuple[BuildRecord, str]:
        s = summary
        rec = base.model_copy(
            update={
                "vectors": s.vectors,
                "clusters": s.clusters,
                "inertia": s.inertia,
                "silhouette": s.silhouette,
                "build_seconds": s.build_seconds,
            }
        )
        return rec, (
            f"version {rec.version}: k={s.clusters}, silhouette {s.silhouette}, "
            f"inertia {s.inertia}, {s.vectors} vectors, {s.build_seconds}s"
        )

    def serving_parameter(self, spec: WorkloadSpec) -> int | None:
        return None

    def verdict(self, spec: WorkloadSpec, rec: BuildRecord) -> Verdict | None:
        if rec.outcome != "Succeeded":
            return None
        # The build's gate judged the model; serving has no parameter to judge.
        why = f"version {rec.version} passed its build gate"
        return Verdict(True, cond_names.REASON_ACCEPTED, why, None)

    def status(
        self,
        common: Mapping[str, Any],
        old: WorkloadStatus,
        stable_build: BuildRecord | None,
        stable_rev: RevisionRecord | None,
    ) -> WorkloadStatus:
        b = stable_build
        # drift is measured outside the plan (the drift triggers): kept as it was.
        drift = old.drift if isinstance(old, ClusterModelStatus) else None
        return ClusterModelStatus(
            **common,
            clusters=b.clusters if b else None,
            silhouette=b.silhouette if b else None,
            inertia=b.inertia if b else None,
            drift=drift,
        )


HNSW = HnswIndex()
KMEANS = KMeansModel()
