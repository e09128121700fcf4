"""The permissions the operator needs, written once.

Rendered as a ClusterRole (operator watching all namespaces) and as a Role
(operator confined to one namespace) by `python -m knn_operator.crdgen`; the
integration tests run the operator with exactly these through a ServiceAccount.
"""

from __future__ import annotations

from typing import Any

from knn_contracts import api

READ = ["get", "list", "watch"]
OWN = [*READ, "create", "patch", "update", "delete"]
ROUTE = ["get", "update"]

# What the operator needs for every feature.
BASE_RULES: list[dict[str, Any]] = [
    {
        "apiGroups": [api.GROUP],
        "resources": [api.KNN_INDEX_PLURAL, api.CLUSTER_MODEL_PLURAL],
        "verbs": READ,
    },
    {
        "apiGroups": [api.GROUP],
        "resources": [f"{api.KNN_INDEX_PLURAL}/status", f"{api.CLUSTER_MODEL_PLURAL}/status"],
        "verbs": ["get", "patch", "update"],
    },
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": OWN},
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": OWN},
    {"apiGroups": [""], "resources": ["services"], "verbs": OWN},
    {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": OWN},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": OWN},
    {"apiGroups": [""], "resources": ["pods"], "verbs": READ},
    {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    # Routes the user owns (rollout.trafficRouter gatewayAPI / istio): read by name and
    # replaced with only their weights changed. No list, watch, create or delete: the
    # operator addresses only the route a spec names. RBAC cannot narrow this to those
    # names (they are not known when the role is made); the chart's watchNamespaces
    # confines it to the namespaces the operator serves.
    {"apiGroups": ["gateway.networking.k8s.io"], "resources": ["httproutes"], "verbs": ROUTE},
    {
        "apiGroups": ["networking.istio.io"],
        "resources": ["virtualservices", "destinationrules"],
        "verbs": ROUTE,
    },
]
# Prometheus credentials named by spec.rollout.analysis.prometheus (get by name only):
# only that feature needs Secrets, so the chart grants them only when asked
# (rbac.prometheusSecrets).
PROMETHEUS_SECRETS_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
]
# Everything: rbac/ and the tests run the operator with these.
RULES: list[dict[str, Any]] = [*BASE_RULES, *PROMETHEUS_SECRETS_RULES]

NAME = "knn-operator"


def cluster_role(name: str = NAME) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "knn-operator"}},
        "rules": RULES,
    }


def role(namespace: str, name: str = NAME) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/name": "knn-operator"},
        },
        "rules": RULES,
    }
