"""The product for real: the operator as a Deployment from its image (built by
BuildKit from Dockerfile.operator) with the RBAC of rbac/, a KnnIndex from
examples/ built by a real Job on the node and served by a real Deployment, queried
through its Service. No status is written by a test: every phase comes from the
operator reacting to what the kubelet and the controllers did."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from knn_devtools.cluster import Cluster
from knn_devtools.incluster import IMAGE_UID, data_dir
from knn_devtools.kubectl import Kubectl
from knn_devtools.synthetic import clustered
from knn_devtools.tools import REPO_ROOT

if TYPE_CHECKING:
    from tests.e2e.e2e_support import wait_for
else:
    from e2e_support import wait_for

EXAMPLE = REPO_ROOT / "examples" / "local-cluster" / "products.yaml"
VECTORS, DIMENSION = 20_000, 64


def _write_dataset(cluster: Cluster) -> np.ndarray[Any, np.dtype[np.float32]]:
    target = data_dir(cluster) / "datasets"
    target.mkdir(parents=True, exist_ok=True)
    os.chown(target, IMAGE_UID, IMAGE_UID)
    data = clustered(VECTORS, DIMENSION, seed=11).astype(np.float32)
    np.save(target / "products.npy", data)
    return data


def _status(kubectl: Kubectl) -> dict[str, Any]:
    obj = kubectl.json("-n", "demo", "get", "knn", "products")
    status: dict[str, Any] = obj.get("status") or {}
    return status


def test_build_serve_query(cluster: Cluster, kubectl: Kubectl, tmp_path: Path) -> None:
    data = _write_dataset(cluster)
    began = time.monotonic()
    kubectl.run("apply", "-f", str(EXAMPLE))
    phases: list[str] = []

    def ready() -> bool:
        status = _status(kubectl)
        phase = status.get("phase", "")
        if phase and (not phases or phases[-1] != phase):
            phases.append(phase)
        conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
        return conditions.get("Ready") == "True"

    try:
        wait_for("KnnIndex demo/products Ready", ready, timeout=600)
    except AssertionError:
        diag = kubectl.run("-n", "demo", "get", "all,events", check=False).stdout
        ops = kubectl.run(
            "-n", "knn-system", "logs", "deployment/knn-operator", "--tail=60", check=False
        ).stdout
        raise AssertionError(f"phases {phases}\n{diag}\n--- operator ---\n{ops}") from None
    elapsed = time.monotonic() - began
    status = _status(kubectl)
    assert "Building" in phases and phases[-1] == "Serving", phases
    build = status["builds"][-1]
    assert build["outcome"] == "Succeeded"
    assert build["vectors"] == VECTORS
    assert build["recall"] >= 0.9
    print(f"KnnIndex Ready {elapsed:.1f}s after apply; phases {phases}; build {build}")

    # The stable Service routes to the serving pod: query it from the host by ClusterIP.
    vip = kubectl.json("-n", "demo", "get", "service", "products")["spec"]["clusterIP"]
    query = data[123]
    request = urllib.request.Request(
        f"http://{vip}/v1/query",
        data=json.dumps({"vector": query.tolist(), "k": 5}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.load(response)
    assert len(answer["ids"]) == 5
    assert answer["distances"] == sorted(answer["distances"])
    assert answer["version"] == status["stableVersion"]
