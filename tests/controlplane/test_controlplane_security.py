"""Pod Security admission and RBAC are really enforced by the test control plane."""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from knn_devtools.controlplane import ControlPlane
from knn_devtools.kubectl import Kubectl
from knn_devtools.rbac import ServiceAccountCredentials

pytestmark = pytest.mark.controlplane


def _pod(name: str, security_context: dict[str, Any], pod_security: dict[str, Any]) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "securityContext": pod_security,
                "containers": [
                    {
                        "name": "c",
                        "image": "example.invalid/c",
                        "securityContext": security_context,
                    }
                ],
            },
        }
    )


def test_restricted_namespace_refuses_privileged_pod_naming_the_violation(
    kubectl: Kubectl, namespace: str
) -> None:
    refused = kubectl.run(
        "apply", "--server-side", "-n", namespace, "-f", "-",
        stdin=_pod("bad", {"privileged": True}, {}), check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in refused.stderr, refused.stderr
    assert "privileged" in refused.stderr, refused.stderr
    assert "runAsNonRoot" in refused.stderr, refused.stderr

    # The same namespace admits a pod that meets the profile, so the refusal above
    # is the profile's doing and not a broken namespace.
    compliant = _pod(
        "good",
        {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
    )
    kubectl.apply_manifest(compliant, "-n", namespace)


def _status(control_plane: ControlPlane, token: str, path: str) -> int:
    tls = ssl.create_default_context(cadata=control_plane.pki.ca.cert_pem.decode())
    with httpx.Client(base_url=control_plane.server, verify=tls, timeout=10) as client:
        return client.get(path, headers={"Authorization": f"Bearer {token}"}).status_code


def test_service_account_gets_exactly_its_role(
    control_plane: ControlPlane,
    kubectl: Kubectl,
    namespace: str,
    service_account: Callable[..., ServiceAccountCredentials],
) -> None:
    kubectl.run(
        "create", "clusterrole", f"configmap-reader-{namespace}",
        "--verb=get,list,watch", "--resource=configmaps",
    )  # fmt: skip
    kubectl.run(
        "create", "clusterrole", f"pod-reader-{namespace}", "--verb=get,list", "--resource=pods"
    )
    reader = service_account("reader", f"configmap-reader-{namespace}")
    other = service_account("other", f"pod-reader-{namespace}")
    path = f"/api/v1/namespaces/{namespace}/configmaps"

    assert _status(control_plane, reader.token, path) == 200
    assert _status(control_plane, other.token, path) == 403
    # A RoleBinding grants the ClusterRole in its own namespace only.
    assert _status(control_plane, reader.token, "/api/v1/namespaces/default/configmaps") == 403

    allowed = reader.kubectl().run("get", "configmaps")
    assert allowed.returncode == 0
    denied = other.kubectl().run("get", "configmaps", check=False)
    assert denied.returncode != 0
    assert "Forbidden" in denied.stderr, denied.stderr
    assert other.username in denied.stderr, denied.stderr
