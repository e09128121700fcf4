"""ServiceAccounts with exactly one role, and kubeconfigs that act as them.

A process given such a kubeconfig (an operator under test, a kubectl call in a
test) runs with that role's permissions and nothing else, which is how RBAC
manifests are tested for being sufficient and no broader than needed.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from knn_devtools import kubeconfig
from knn_devtools.kubectl import Kubectl

RoleKind = Literal["ClusterRole", "Role"]


@dataclass(frozen=True)
class ServiceAccountCredentials:
    namespace: str
    name: str
    token: str
    kubeconfig: Path

    @property
    def username(self) -> str:
        """The user name RBAC sees, e.g. for ``kubectl auth can-i --as``."""
        return f"system:serviceaccount:{self.namespace}:{self.name}"

    def kubectl(self) -> Kubectl:
        """kubectl acting as this ServiceAccount."""
        return Kubectl(self.kubeconfig)

    def environ(self) -> dict[str, str]:
        """The current environment with KUBECONFIG pointing at this account, for a
        child process (an operator under test) that must run with exactly this role."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        return env


def service_account_with_role(
    admin: Kubectl,
    *,
    namespace: str,
    name: str,
    role: str,
    role_kind: RoleKind = "ClusterRole",
    cluster_wide: bool = False,
    kubeconfig_path: Path,
    duration: str = "1h",
) -> ServiceAccountCredentials:
    """Creates ServiceAccount ``namespace/name`` bound to ``role`` and a kubeconfig for it.

    A ClusterRole is bound in ``namespace`` by a RoleBinding unless
    ``cluster_wide``, which uses a ClusterRoleBinding; a Role is always bound in
    ``namespace``. The token comes from the TokenRequest API
    (``kubectl create token``), the way a projected token reaches a pod.
    """
    if role_kind == "Role" and cluster_wide:
        raise ValueError("a Role is namespaced; it cannot be bound cluster-wide")
    binding = f"{name}-{role}".replace(":", "-")
    admin.apply_manifest(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": name, "namespace": namespace},
            }
        )
    )
    subject = {"kind": "ServiceAccount", "name": name, "namespace": namespace}
    metadata: dict[str, str] = {"name": binding}
    if not cluster_wide:
        metadata["namespace"] = namespace
    admin.apply_manifest(
        json.dumps(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding" if cluster_wide else "RoleBinding",
                "metadata": metadata,
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": role_kind,
                    "name": role,
                },
                "subjects": [subject],
            }
        )
    )
    token = admin.run(
        "create", "token", name, "-n", namespace, f"--duration={duration}"
    ).stdout.strip()
    if not token:
        raise RuntimeError(f"kubectl create token {name} -n {namespace} returned no token")
    server, ca_pem = cluster_of(admin)
    config = kubeconfig.build(
        server, ca_pem, user=f"{namespace}-{name}", token=token, namespace=namespace
    )
    kubeconfig.write(kubeconfig_path, config)
    return ServiceAccountCredentials(namespace, name, token, kubeconfig_path)


def cluster_of(kubectl: Kubectl) -> tuple[str, bytes]:
    """Server URL and CA certificate of ``kubectl``'s current context."""
    view = kubectl.json("config", "view", "--raw", "--minify")
    cluster = view["clusters"][0]["cluster"]
    return cluster["server"], base64.b64decode(cluster["certificate-authority-data"])
