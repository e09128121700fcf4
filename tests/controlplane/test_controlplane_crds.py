"""CRD behaviour the operator depends on, checked on the real apiserver with kubectl."""

from __future__ import annotations

import json

import pytest
from knn_devtools.kubectl import Kubectl

pytestmark = pytest.mark.controlplane


def _widget(name: str, min_replicas: int, max_replicas: int) -> str:
    return json.dumps(
        {
            "apiVersion": "test.knn.dev/v1",
            "kind": "Widget",
            "metadata": {"name": name},
            "spec": {"minReplicas": min_replicas, "maxReplicas": max_replicas},
        }
    )


def test_cel_rule_refuses_invalid_object_with_its_message(
    kubectl: Kubectl, namespace: str, test_crds: list[str]
) -> None:
    assert test_crds == ["widgets.test.knn.dev"]
    refused = kubectl.run(
        "apply", "--server-side", "-n", namespace, "-f", "-",
        stdin=_widget("bad", 3, 1), check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "minReplicas must not exceed maxReplicas" in refused.stderr, refused.stderr
    assert "Invalid" in refused.stderr, refused.stderr

    kubectl.apply_manifest(_widget("good", 1, 3), "-n", namespace)
    assert kubectl.json("get", "widget", "good", "-n", namespace)["spec"]["maxReplicas"] == 3


def test_status_subresource_separates_spec_and_status(
    kubectl: Kubectl, namespace: str, test_crds: list[str]
) -> None:
    kubectl.apply_manifest(_widget("w", 1, 2), "-n", namespace)
    both = json.dumps({"spec": {"maxReplicas": 5}, "status": {"phase": "Ready"}})

    # Through /status only status changes, and generation does not move.
    kubectl.run(
        "patch", "widget", "w", "-n", namespace,
        "--subresource=status", "--type=merge", "-p", both,
    )  # fmt: skip
    obj = kubectl.json("get", "widget", "w", "-n", namespace)
    assert obj["spec"]["maxReplicas"] == 2
    assert obj["status"]["phase"] == "Ready"
    assert obj["metadata"]["generation"] == 1

    # Through the main resource only spec changes, and generation does move.
    both = json.dumps({"spec": {"maxReplicas": 4}, "status": {"phase": "Failed"}})
    kubectl.run("patch", "widget", "w", "-n", namespace, "--type=merge", "-p", both)
    obj = kubectl.json("get", "widget", "w", "-n", namespace)
    assert obj["spec"]["maxReplicas"] == 4
    assert obj["status"]["phase"] == "Ready"
    assert obj["metadata"]["generation"] == 2


_EXPECTED_THIRD_PARTY = {
    "httproutes.gateway.networking.k8s.io",
    "virtualservices.networking.istio.io",
    "destinationrules.networking.istio.io",
    "servicemonitors.monitoring.coreos.com",
    "podmonitors.monitoring.coreos.com",
    "prometheusrules.monitoring.coreos.com",
}


def test_third_party_crds_are_established(kubectl: Kubectl, thirdparty_crds: list[str]) -> None:
    assert set(thirdparty_crds) == _EXPECTED_THIRD_PARTY
    for name in thirdparty_crds:
        conditions = kubectl.json("get", "crd", name)["status"]["conditions"]
        established = [c for c in conditions if c["type"] == "Established"]
        assert established and established[0]["status"] == "True", (name, conditions)


def test_third_party_kinds_accept_objects_the_operator_writes(
    kubectl: Kubectl, namespace: str, thirdparty_crds: list[str]
) -> None:
    """One object of each kind, shaped like what the operator will write, is accepted
    by the pinned schemas (including their CEL rules)."""
    meta = {"name": "idx", "namespace": namespace}
    objects = [
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": meta,
            "spec": {
                "parentRefs": [{"name": "gw"}],
                "rules": [
                    {
                        "backendRefs": [
                            {"name": "idx-v1", "port": 8080, "weight": 90},
                            {"name": "idx-v2", "port": 8080, "weight": 10},
                        ]
                    }
                ],
            },
        },
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": meta,
            "spec": {
                "hosts": ["idx"],
                "http": [
                    {
                        "route": [
                            {"destination": {"host": "idx", "subset": "v1"}, "weight": 90},
                            {"destination": {"host": "idx", "subset": "v2"}, "weight": 10},
                        ]
                    }
                ],
            },
        },
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": meta,
            "spec": {
                "host": "idx",
                "subsets": [
                    {"name": "v1", "labels": {"version": "v1"}},
                    {"name": "v2", "labels": {"version": "v2"}},
                ],
            },
        },
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": meta,
            "spec": {
                "selector": {"matchLabels": {"app": "idx"}},
                "endpoints": [{"port": "http", "path": "/metrics"}],
            },
        },
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PodMonitor",
            "metadata": meta,
            "spec": {
                "selector": {"matchLabels": {"app": "idx"}},
                "podMetricsEndpoints": [{"port": "http"}],
            },
        },
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": meta,
            "spec": {
                "groups": [
                    {
                        "name": "knn",
                        "rules": [{"record": "knn:requests:rate5m", "expr": "vector(1)"}],
                    }
                ]
            },
        },
    ]
    for obj in objects:
        kubectl.apply_manifest(json.dumps(obj))
    kinds = "httproute,virtualservice,destinationrule,servicemonitor,podmonitor,prometheusrule"
    names = kubectl.run("get", kinds, "-n", namespace, "-o", "name").stdout.split()
    assert len(names) == len(objects), names
