"""Deleting a KnnIndex deletes what it owns, through the real garbage collector.

The session's control plane runs no controllers. Here kube-controller-manager
runs against it with the garbage collector and nothing else (a Job or Deployment
controller would fight the test, which plays their part), started after the
KnnIndex CRD is installed: the collector then knows the kind from its first
discovery instead of up to 30 s later, at its next one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from knn_devtools.controlplane import ControlPlane
from knn_devtools.kubectl import Kubectl
from knn_devtools.procs import ManagedProcess, free_loopback_port
from knn_devtools.tools import tool_path

if TYPE_CHECKING:
    from tests.controlplane import operator_support as ops
else:
    import operator_support as ops

pytestmark = pytest.mark.controlplane


@pytest.fixture
def garbage_collector(
    control_plane: ControlPlane, knn_crds: list[str], tmp_path: Path
) -> Iterator[ManagedProcess]:
    """kube-controller-manager running only garbage-collector-controller, for one test."""
    port = free_loopback_port()
    admin = str(control_plane.kubeconfig)
    gc = ManagedProcess(
        "kube-controller-manager",
        [
            str(tool_path("kube-controller-manager")),
            f"--kubeconfig={admin}",
            f"--authentication-kubeconfig={admin}",
            f"--authorization-kubeconfig={admin}",
            "--controllers=garbage-collector-controller",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={tmp_path / 'kcm-certs'}",
            "--leader-elect=false",
            "--profiling=false",
        ],
        tmp_path / "kube-controller-manager.log",
    )
    gc.start()

    def healthy() -> bool:
        gc.check_running()
        return ops.https_ok(port, "/healthz")

    try:
        ops.wait_for(
            "kube-controller-manager's garbage collector to report healthy", healthy, timeout=60
        )
        yield gc
    finally:
        gc.stop()


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
    kubectl: Kubectl,
    namespace: str,
    start_operator: ops.OperatorStarter,
    garbage_collector: ManagedProcess,
) -> None:
    operator = start_operator()
    ns = namespace
    name, keep = "products", "neighbour"
    v1, v2 = ops.expected_version({}), ops.expected_version({"hnsw": {"m": 32}})
    ops.apply(kubectl, ns, ops.knn_index(name), ops.knn_index(keep))
    ops.build_and_serve(kubectl, ns, name, v1, operator)
    ops.build_and_serve(kubectl, ns, keep, v1, operator)
    # A second version under way: a Job without a Pod yet.
    ops.apply(kubectl, ns, ops.knn_index(name, {"hnsw": {"m": 32}}))
    ops.wait_job(kubectl, ns, name, v2, operator)

    owned = _owned(kubectl, ns, name)
    [dep_name] = ops.serving_deployments(kubectl, ns, name, v1)
    [pod] = owned.pop("pods")
    assert pod.startswith(f"{name}-build-{v1}-")
    assert owned == {
        "jobs": sorted([f"{name}-build-{v1}", f"{name}-build-{v2}"]),
        "deployments": [dep_name],
        "services": sorted([name, dep_name]),
    }
    neighbour_before = _owned(kubectl, ns, keep)

    kubectl.run("delete", "knn", name, "-n", ns)
    ops.wait_for(
        f"the garbage collector to delete everything {name} owned (the builder Pod via its Job)",
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
