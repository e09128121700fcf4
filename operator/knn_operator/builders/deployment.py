"""The serving Deployment of one version: `knn-serve` on the version's artifact."""

from __future__ import annotations

from ..models.knnindex import KnnIndexSpec, RevisionRecord
from ..settings import Settings
from .common import (
    Manifest,
    Owner,
    artifact_uri,
    container,
    deployment_name,
    metadata,
    pod_spec,
    pod_template,
    resources,
    storage_mounts,
)
from .service import revision_selector

SERVING_CONTAINER = "serve"


PRESTOP_SLEEP_SECONDS = 5


def serving_deployment(
    owner: Owner,
    spec: KnnIndexSpec,
    rev: RevisionRecord,
    replicas: int | None,
    settings: Settings,
) -> Manifest:
    """One revision, made from its record (the spec may have moved on to a newer
    revision); the spec gives only where artifacts live and their credentials."""
    revision, version = rev.revision, rev.version
    # None: an autoscaler owns the replica count; the operator leaves it out.
    mounts = storage_mounts(spec, settings, read_only=True)
    selector = revision_selector(owner, revision)
    port = settings.serving_port
    main = container(
        SERVING_CONTAINER,
        rev.image,
        [
            "knn-serve",
            "--artifact",
            artifact_uri(spec, version),
            "--port",
            str(port),
            "--workers",
            str(rev.workers),
            "--probe-interval",
            str(rev.probe_interval_seconds),
            "--ef-search",
            str(rev.ef_search),
            "--revision",
            revision,
        ],
        settings,
        mounts,
        resources(rev.resources, {"cpu": "500m", "memory": "512Mi"}),
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
        # A pod told to stop keeps answering while kube-proxy and gateways, which learn
        # of its removal asynchronously, stop sending it requests (a scale-down or a
        # rollback loses none in flight).
        lifecycle={"preStop": {"sleep": {"seconds": PRESTOP_SLEEP_SECONDS}}},
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(owner, deployment_name(owner, revision), selector),
        "spec": {
            **({"replicas": replicas} if replicas is not None else {}),
            "selector": {"matchLabels": selector},
            "template": pod_template(
                selector,
                {
                    "prometheus.io/scrape": "true",
                    "prometheus.io/port": str(port),
                    "prometheus.io/path": "/metrics",
                },
                pod_spec(main, mounts, terminationGracePeriodSeconds=30),
                rev.pod,
            ),
        },
    }
