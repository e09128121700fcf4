"""A version names the inputs that change the artifact, and nothing else.

The identity is knn_contracts.identity, shared with the builder. Replicas,
resources, efSearch (a serving-time parameter) and rollout settings change
serving in place; the source, its format and ids, the metric, the HNSW build
parameters, the validation and a rebuild token change the artifact and make a
new version. A retraining trigger (spec.rebuild.schedule, onDrift) names a token of
its own, kept in status.lastRebuild; it is only added to the identity once there is
one, so the versions of objects that never had a trigger keep their ids.
"""

from __future__ import annotations

from knn_contracts.identity import BuildInputs
from knn_contracts.identity import version_of as identity_version

from .models.knnindex import KnnIndexSpec


def build_inputs(
    spec: KnnIndexSpec, rebuild_annotation: str | None = None, trigger: str | None = None
) -> BuildInputs:
    s, v = spec.source, spec.build.validation
    return BuildInputs(
        source_uri=s.uri,
        source_format=s.format,
        dimension=s.dimension,
        ids=s.ids,
        column=s.column,
        id_column=s.id_column,
        metric=spec.metric,
        m=spec.hnsw.m,
        ef_construction=spec.hnsw.ef_construction,
        probe_queries=v.probe_queries,
        probe_source=v.probe_source,
        k=v.k,
        min_recall=v.min_recall,
        tokens=(spec.rebuild.token, rebuild_annotation, *((trigger,) if trigger else ())),
    )


def version_of(
    spec: KnnIndexSpec, rebuild_annotation: str | None = None, trigger: str | None = None
) -> str:
    return identity_version(build_inputs(spec, rebuild_annotation, trigger))
