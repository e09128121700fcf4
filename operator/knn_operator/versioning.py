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

from knn_contracts.identity import BuildInputs, KMeansBuildInputs
from knn_contracts.identity import version_of as identity_version

from .models.clustermodel import ClusterModelSpec
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


def kmeans_build_inputs(
    spec: ClusterModelSpec, rebuild_annotation: str | None = None, trigger: str | None = None
) -> KMeansBuildInputs:
    """A ClusterModel's version: the source and the training parameters. The gate
    (minSilhouette, minClusterFraction, maxInertiaRegression) is not in it, as for
    the builder: a model is the same model whatever it is judged against."""
    s, km, v = spec.source, spec.kmeans, spec.build.validation
    lo, hi = (
        (km.clusters, km.clusters)
        if km.clusters is not None
        else (km.clusters_range.min, km.clusters_range.max)  # type: ignore[union-attr]
    )
    above = "default" if km.mini_batch_above is None else str(km.mini_batch_above)
    return KMeansBuildInputs(
        source_uri=s.uri,
        source_format=s.format,
        dimension=s.dimension,
        column=s.column,
        clusters_min=lo,
        clusters_max=hi,
        n_init=km.n_init,
        max_iter=km.max_iter,
        seed=km.seed,
        algorithm=f"minibatch-above-{above}",
        batch_size=km.batch_size,
        probe_points=v.probe_points,
        probe_source=v.probe_source,
        silhouette_sample=v.silhouette_sample,
        tokens=(spec.rebuild.token, rebuild_annotation, *((trigger,) if trigger else ())),
    )


def kmeans_version_of(
    spec: ClusterModelSpec, rebuild_annotation: str | None = None, trigger: str | None = None
) -> str:
    return identity_version(kmeans_build_inputs(spec, rebuild_annotation, trigger))
