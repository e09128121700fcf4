"""The serving Deployment of one version: `knn-serve` on the version's artifact."""

from __future__ import annotations

from ..models.knnindex import KnnIndexSpec
from ..settings import Settings
from .common import (
    Manifest,
    Owner,
    artifact_uri,
    container,
    deployment_name,
    labels,
    metadata,
    pod_spec,
    resources,
    storage_mounts,
)

SERVING_CONTAINER = "serve"


def serving_deployment(
    owner: Owner,
    spec: KnnIndexSpec,
    version: str,
    replicas: int,
    settings: Settings,
    ef_search: int | None = None,
) -> Manifest:
    """`ef_search` overrides spec.hnsw.efSearch: the stable version keeps the one it
    serves with while a new one is refused (efsearch.judge)."""
    mounts = storage_mounts(spec, settings, read_only=True)
    selector = labels(owner, version, "serving")
    port = settings.serving_port
    main = container(
        SERVING_CONTAINER,
        spec.serving.image or settings.serving_image,
        [
            "knn-serve",
            "--artifact",
            artifact_uri(spec, version),
            "--port",
            str(port),
            "--workers",
            str(spec.serving.workers),
            "--probe-interval",
            str(spec.serving.probe_interval_seconds),
            "--ef-search",
            str(ef_search or spec.hnsw.ef_search),
        ],
        settings,
        mounts,
        resources(spec.serving.resources, {"cpu": "500m", "memory": "512Mi"}),
        env=[
            {"name": "KNN_INDEX_NAME", "value": owner.name},
            {
                "name": "KNN_NAMESPACE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            },
        ],
        ports=[{"name": "http", "containerPort": port, "protocol": "TCP"}],
        readinessProbe={
            "httpGet": {"path": "/readyz", "port": "http"},
            "periodSeconds": 5,
            "failureThreshold": 2,
        },
        livenessProbe={
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(owner, deployment_name(owner, version), selector),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {
                    "labels": selector,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(port),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": pod_spec(main, mounts, terminationGracePeriodSeconds=30),
            },
        },
    }
