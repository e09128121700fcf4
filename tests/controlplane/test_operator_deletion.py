"""Deleting a KnnIndex deletes what it owns, through the real garbage collector.

The session's control plane runs no controllers, so this module starts its own
with kube-controller-manager running the garbage collector and nothing else (a
Job or Deployment controller would fight the test, which plays their part).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from knn_devtools.controlplane import ControlPlane, Options
from knn_devtools.crds import install_crds
from knn_devtools.kubectl import Kubectl
from knn_devtools.rbac import service_account_with_role

if TYPE_CHECKING:
    from tests.controlplane import operator_support as ops
else:
    import operator_support as ops

pytestmark = pytest.mark.controlplane

GC_ONLY = Options(controller_manager=True, controllers=("garbage-collector-controller",))


@pytest.fixture(scope="module")
def gc_kubectl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kubectl]:
    """Admin kubectl of a control plane whose controller manager runs only the
    garbage collector; the KnnIndex CRD and the operator's ClusterRole installed."""
    log_dir = tmp_path_factory.mktemp("gc-controlplane-logs", numbered=True)
    with ControlPlane(GC_ONLY, log_dir=log_dir, echo=None) as cp:
        kubectl = cp.kubectl()
        install_crds(kubectl, [ops.CRD_FILE])
        kubectl.run("apply", "--server-side", "-f", str(ops.CLUSTER_ROLE_FILE))
        yield kubectl


@pytest.fixture
def gc_operator(gc_kubectl: Kubectl, tmp_path: Path) -> Iterator[tuple[str, ops.OperatorProcess]]:
    namespace = ops.make_namespace(gc_kubectl, "deletion")
    account = service_account_with_role(
        gc_kubectl,
        namespace=namespace,
        name="knn-operator",
        role=ops.ROLE_NAME,
        cluster_wide=True,
        kubeconfig_path=tmp_path / "operator.kubeconfig",
    )
    with ops.OperatorProcess(account.kubeconfig, tmp_path / "operator.log") as operator:
        yield namespace, operator


def _owned(kubectl: Kubectl, ns: str, name: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for kind in ("jobs", "deployments", "services", "pods"):
        found = [
            o["metadata"]["name"] for o in ops.items(kubectl, kind, ns, f"knn.dev/index={name}")
        ]
        if found:
            out[kind] = sorted(found)
    return out


def test_deleting_the_index_deletes_its_jobs_deployments_and_services(
    gc_kubectl: Kubectl, gc_operator: tuple[str, ops.OperatorProcess]
) -> None:
    kubectl = gc_kubectl
    ns, operator = gc_operator
    name, keep = "products", "neighbour"
    v1, v2 = ops.expected_version({}), ops.expected_version({"hnsw": {"m": 32}})
    ops.apply(kubectl, ns, ops.knn_index(name), ops.knn_index(keep))
    ops.build_and_serve(kubectl, ns, name, v1, operator)
    ops.build_and_serve(kubectl, ns, keep, v1, operator)
    # A second version under way: a Job without a Pod yet.
    ops.apply(kubectl, ns, ops.knn_index(name, {"hnsw": {"m": 32}}))
    ops.wait_job(kubectl, ns, name, v2, operator)

    owned = _owned(kubectl, ns, name)
    assert owned == {
        "jobs": sorted([f"{name}-build-{v1}", f"{name}-build-{v2}"]),
        "deployments": [f"{name}-{v1}"],
        "services": sorted([name, f"{name}-{v1}"]),
        "pods": [p for p in owned.get("pods", []) if p.startswith(f"{name}-build-{v1}-")],
    }
    assert len(owned["pods"]) == 1
    neighbour_before = _owned(kubectl, ns, keep)

    kubectl.run("delete", "knn", name, "-n", ns)
    ops.wait_for(
        f"the garbage collector to delete everything {name} owned",
        lambda: _owned(kubectl, ns, name) == {},
        timeout=60,
        diagnostics=lambda: json.dumps(_owned(kubectl, ns, name)),
    )
    # The operator does not bring any of it back, and forgets the index.
    ops.wait_reconciles(operator, 3)
    assert _owned(kubectl, ns, name) == {}
    assert _owned(kubectl, ns, keep) == neighbour_before, "another index's objects were touched"
    assert ops.status_of(kubectl, ns, keep)["phase"] == "Serving"
    assert 'knn_operator_objects{kind="KnnIndex",phase="Serving"} 1.0' in operator.metrics()
