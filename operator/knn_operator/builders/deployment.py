"""The serving Deployment of one version: `knn-serve` on the version's artifact."""

from __future__ import annotations

from knn_contracts import api

from ..models.clustermodel import WorkloadSpec
from ..models.knnindex import RevisionRecord
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
# The server labels its series `index` or `model` after the name it is given.
_NAME_ENV = {api.KNN_INDEX_KIND: "KNN_INDEX_NAME", api.CLUSTER_MODEL_KIND: "KNN_MODEL_NAME"}


def _served(owner: Owner, rev: RevisionRecord) -> list[str]:
    """What is served: a k-means model under its name (/v1/assign), or an index at
    the revision's efSearch."""
    if owner.kind == api.CLUSTER_MODEL_KIND:
        return ["--model-name", owner.name]
    return ["--ef-search", str(rev.ef_search)] if rev.ef_search is not None else []


PRESTOP_SLEEP_SECONDS = 5


def serving_deployment(
    owner: Owner,
    spec: WorkloadSpec,
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
            # Before --revision: an index's command is what it was before models existed.
            *_served(owner, rev),
            "--revision",
            revision,
        ],
        settings,
        mounts,
        resources(rev.resources, {"cpu": "500m", "memory": "512Mi"}),
        env=[
            {"name": _NAME_ENV[owner.kind], "value": owner.name},
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
