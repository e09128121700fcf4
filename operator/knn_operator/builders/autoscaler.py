"""The HorizontalPodAutoscaler of an index's stable revision."""

from __future__ import annotations

from ..models.knnindex import Autoscaling
from .common import Manifest, Owner, deployment_name, labels, metadata

AUTOSCALER_COMPONENT = "autoscaler"


def autoscaler(owner: Owner, spec: Autoscaling, stable: str) -> Manifest:
    """`<index>`, targeting the stable revision's Deployment (retargeted at promotion)."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(owner, owner.name, labels(owner, None, AUTOSCALER_COMPONENT)),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": deployment_name(owner, stable),
            },
            "minReplicas": spec.min_replicas,
            "maxReplicas": spec.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": spec.target_cpu_utilization_percentage,
                        },
                    },
                }
            ],
        },
    }


def replicas_only(owner: Owner, revision: str, replicas: int) -> Manifest:
    """What a second field manager applies so the replica count has an owner besides
    the operator's main one: when that one stops sending replicas, server-side apply
    keeps the field (instead of resetting the Deployment to one replica), and the
    autoscaler's writes are never undone."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": deployment_name(owner, revision), "namespace": owner.namespace},
        "spec": {"replicas": replicas},
    }
