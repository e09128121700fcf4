"""The Helm chart on the real node: the local cluster installs the operator with
`helm upgrade --install charts/knn-operator` (knn_devtools.incluster), so every e2e
test runs the chart's Deployment with exactly the chart's RBAC. Here: what the
release installed, no forbidden request in the operator's log while it takes a
KnnIndex to Serving, `helm upgrade` and `helm uninstall` (the data plane keeps
answering while the operator is away), and a reinstall for the tests that follow."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import yaml
from knn_contracts import api
from knn_devtools.buildkit import OPERATOR, SERVING
from knn_devtools.cluster import Cluster
from knn_devtools.incluster import CHART, OPERATOR_NAMESPACE, RELEASE, install_operator
from knn_devtools.kubectl import Helm, Kubectl
from knn_operator import rbac

if TYPE_CHECKING:
    from tests.e2e.e2e_support import query_products, wait_for, wait_products_ready
else:
    from e2e_support import query_products, wait_for, wait_products_ready

# What a request the RBAC refused looks like in kopf's, the client's and our logs: the
# status body's reason, our KubeError ("403 Forbidden"), the client's ApiException
# ("(403)"), the API server's message ("… is forbidden: User …"), kopf's exception. Not
# a bare "403": at DEBUG the client logs whole response bodies, whose numbers contain it.
FORBIDDEN = re.compile(
    r'"reason":\s*"Forbidden"|\b403 Forbidden\b|\(403\)|is forbidden:|APIForbiddenError'
)


def refused_requests(log: str) -> list[str]:
    return [line for line in log.splitlines() if FORBIDDEN.search(line)]


@pytest.fixture(scope="module")
def helm(kubectl: Kubectl) -> Helm:
    return Helm(kubectl.kubeconfig)


def _operator_log(kubectl: Kubectl) -> str:
    return kubectl.run("-n", OPERATOR_NAMESPACE, "logs", f"deployment/{RELEASE}").stdout


def test_the_operator_runs_as_the_charts_release_with_the_charts_rbac(
    kubectl: Kubectl, helm: Helm
) -> None:
    status = json.loads(helm.run("status", RELEASE, "-n", OPERATOR_NAMESPACE, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"
    manifest = helm.run("get", "manifest", RELEASE, "-n", OPERATOR_NAMESPACE).stdout
    kinds = {(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(manifest) if d}
    assert ("Deployment", RELEASE) in kinds and ("ClusterRole", RELEASE) in kinds
    deployment = kubectl.json("-n", OPERATOR_NAMESPACE, "get", "deployment", RELEASE)
    assert deployment["metadata"]["annotations"]["meta.helm.sh/release-name"] == RELEASE
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == RELEASE
    role = kubectl.json("get", "clusterrole", RELEASE)
    assert role["rules"] == rbac.BASE_RULES  # no Secrets unless asked for
    pods = kubectl.json(
        "-n", OPERATOR_NAMESPACE, "get", "pods", "-l", "app.kubernetes.io/name=knn-operator"
    )
    (pod,) = pods["items"]
    container = pod["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["status"]["containerStatuses"][0]["ready"] is True


def test_no_forbidden_request_while_a_knnindex_reaches_serving(
    kubectl: Kubectl, products: Any
) -> None:
    log = _operator_log(kubectl)
    refused = refused_requests(log)
    assert not refused, "\n".join(refused[:20])
    assert log.strip(), "the operator logged nothing"


def test_helm_upgrade_rolls_the_operator_and_it_keeps_reconciling(
    kubectl: Kubectl, helm: Helm, products: Any
) -> None:
    before = kubectl.json("-n", OPERATOR_NAMESPACE, "get", "deployment", RELEASE)
    helm.run(
        "upgrade", RELEASE, str(CHART), "-n", OPERATOR_NAMESPACE, "--reuse-values",
        "--set", "logLevel=DEBUG", "--wait", "--timeout=180s", timeout=200,
    )  # fmt: skip
    after = kubectl.json("-n", OPERATOR_NAMESPACE, "get", "deployment", RELEASE)
    assert after["metadata"]["generation"] > before["metadata"]["generation"]
    args = after["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--log-level=DEBUG" in args
    history = json.loads(
        helm.run("history", RELEASE, "-n", OPERATOR_NAMESPACE, "-o", "json").stdout
    )
    assert history[-1]["status"] == "deployed" and len(history) >= 2
    # The new operator acts on a change: replicas alone scale the stable revision in place.
    kubectl.run(
        "-n", "demo", "patch", "knn", "products", "--type=merge",
        "-p", json.dumps({"spec": {"serving": {"replicas": 2}}}),
    )  # fmt: skip
    revision = kubectl.json("-n", "demo", "get", "knn", "products")["status"]["stableRevision"]

    def scaled() -> bool:
        d = kubectl.json("-n", "demo", "get", "deployment", f"products-{revision}")
        return bool(d["spec"]["replicas"] == 2 and d["status"].get("readyReplicas") == 2)

    wait_for("the upgraded operator to scale demo/products to 2", scaled, timeout=180)
    wait_products_ready(kubectl)
    log = _operator_log(kubectl)
    assert not refused_requests(log)


def test_helm_uninstall_removes_the_operator_and_keeps_the_data_plane_serving(
    kubectl: Kubectl, helm: Helm, cluster: Cluster, products: np.ndarray[Any, Any]
) -> None:
    helm.run(
        "uninstall", RELEASE, "-n", OPERATOR_NAMESPACE, "--wait", "--timeout=120s", timeout=140
    )
    try:
        for kind, ns in (("deployment", OPERATOR_NAMESPACE), ("serviceaccount", OPERATOR_NAMESPACE),
                         ("clusterrole", None), ("clusterrolebinding", None)):  # fmt: skip
            where = ["-n", ns] if ns else []
            got = kubectl.run(*where, "get", kind, RELEASE, check=False)
            assert got.returncode != 0 and "NotFound" in got.stderr, (kind, got.stdout)
        # Helm keeps crds/ (and so every KnnIndex) on uninstall; the servers keep serving.
        kubectl.run("get", "crd", "knnindexes.knn.dev")
        assert kubectl.json("-n", "demo", "get", "knn", "products")["status"]["phase"] == "Serving"
        answer = query_products(kubectl, products[7].tolist())
        assert answer["ids"][0] == 7
    finally:
        names = cluster.image_names
        install_operator(
            kubectl,
            names.get(OPERATOR.repository) or OPERATOR.name(),
            names.get(SERVING.repository) or SERVING.name(),
            timeout=180,
        )
    wait_products_ready(kubectl)


def test_the_operator_writes_only_the_status_of_a_knnindex(kubectl: Kubectl, products: Any) -> None:
    """What GitOps tools rely on: after builds, rollouts, an upgrade and a rescale, every
    field the operator owns on the KnnIndex is in its status subresource; spec and
    metadata are the user's (and their Git repository's) alone."""
    shown = kubectl.json("-n", "demo", "get", "knn", "products", "--show-managed-fields")
    mine = [m for m in shown["metadata"]["managedFields"] if m["manager"] == api.FIELD_MANAGER]
    assert mine, [m["manager"] for m in shown["metadata"]["managedFields"]]
    for entry in mine:
        assert entry.get("subresource") == "status", entry
        assert set(entry["fieldsV1"]) == {"f:status"}, entry["fieldsV1"].keys()
    others = [m for m in shown["metadata"]["managedFields"] if m.get("subresource") == "status"]
    assert {m["manager"] for m in others} == {api.FIELD_MANAGER}
