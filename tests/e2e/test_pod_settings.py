"""What a cluster operator sets on a KnnIndex's pods reaches the real pods on the real
node: placement, labels and annotations through a new revision, and a
PodDisruptionBudget that the API server's eviction really honours."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from knn_devtools.kubectl import Kubectl

if TYPE_CHECKING:
    from tests.e2e.e2e_support import wait_for, wait_products_ready
else:
    from e2e_support import wait_for, wait_products_ready


def _status(kubectl: Kubectl) -> dict[str, Any]:
    status: dict[str, Any] = kubectl.json("-n", "demo", "get", "knn", "products")["status"]
    return status


def _diagnostics(kubectl: Kubectl) -> str:
    objects = kubectl.run("-n", "demo", "get", "knn,deploy,pods,pdb,events", check=False).stdout
    status = json.dumps(_status(kubectl), indent=1)
    log = kubectl.run(
        "-n", "knn-system", "logs", "deployment/knn-operator", "--tail=80", check=False
    ).stdout  # fmt: skip
    return f"{objects}\n--- status ---\n{status}\n--- operator ---\n{log}"


def _patch_serving(kubectl: Kubectl, serving: dict[str, Any]) -> None:
    kubectl.run(
        "-n", "demo", "patch", "knn", "products", "--type=merge",
        "-p", json.dumps({"spec": {"serving": serving}}),
    )  # fmt: skip


def test_pod_overrides_and_a_disruption_budget_reach_the_real_pods(
    kubectl: Kubectl, products: Any
) -> None:
    before = _status(kubectl)["stableRevision"]
    node = kubectl.json("get", "nodes")["items"][0]["metadata"]["name"]
    _patch_serving(
        kubectl,
        {
            # One replica, as the example: the 2-core node fits the stable's pod and
            # the canary's side by side (500m requested each), not two of each.
            "disruptionBudget": {"minAvailable": "100%"},
            "pod": {
                "nodeSelector": {"kubernetes.io/hostname": node},
                "tolerations": [{"key": "dedicated", "operator": "Exists"}],
                "labels": {"team": "search"},
                "annotations": {"example.com/owner": "search"},
            },
        },
    )

    def promoted() -> str | None:
        st = _status(kubectl)
        new = st.get("stableRevision")
        return new if new != before and st.get("phase") == "Serving" else None

    # Placement changes the pods: a new revision, promoted once available (no steps).
    try:
        revision = wait_for("the revision with the pod settings to serve", promoted, timeout=300)
    except AssertionError as err:
        raise AssertionError(f"{err}\n{_diagnostics(kubectl)}") from None
    wait_products_ready(kubectl)
    pods = kubectl.json("-n", "demo", "get", "pods", "-l", f"knn.dev/revision={revision}")
    running = [p for p in pods["items"] if p["status"].get("phase") == "Running"]
    assert len(running) == 1, [p["status"].get("phase") for p in pods["items"]]
    for pod in running:
        assert pod["metadata"]["labels"]["team"] == "search"
        assert pod["metadata"]["annotations"]["example.com/owner"] == "search"
        assert pod["spec"]["nodeSelector"] == {"kubernetes.io/hostname": node}
        assert pod["spec"]["nodeName"] == node

    name = f"products-{revision}"

    def budget_settled() -> dict[str, Any] | None:
        got = kubectl.run("-n", "demo", "get", "pdb", name, "-o", "json", check=False)
        if got.returncode != 0:
            return None
        status: dict[str, Any] = json.loads(got.stdout).get("status") or {}
        return status if status.get("currentHealthy") == 1 else None

    status = wait_for(f"PodDisruptionBudget {name} to count the pod", budget_settled)
    assert status["disruptionsAllowed"] == 0
    # The API server refuses to evict a pod the budget protects (a drain would wait).
    victim = running[0]["metadata"]["name"]
    eviction = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": victim, "namespace": "demo"},
    }
    refused = kubectl.run(
        "create", "--raw", f"/api/v1/namespaces/demo/pods/{victim}/eviction", "-f", "-",
        stdin=json.dumps(eviction), check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "disruption budget" in refused.stderr, refused.stderr

    # No longer asked for: the budget goes, the revision stays.
    _patch_serving(kubectl, {"disruptionBudget": None})
    wait_for(
        f"PodDisruptionBudget {name} to be deleted",
        lambda: kubectl.run("-n", "demo", "get", "pdb", name, check=False).returncode != 0,
    )
    assert _status(kubectl)["stableRevision"] == revision
