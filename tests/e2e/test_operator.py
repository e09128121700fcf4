"""The product for real: the operator installed by its Helm chart from its image (built by
BuildKit from Dockerfile.operator), a KnnIndex from
examples/ built by a real Job on the node and served by a real Deployment, queried
through its Service. No status is written by a test: every phase comes from the
operator reacting to what the kubelet and the controllers did."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from knn_devtools.cluster import Cluster
from knn_devtools.kubectl import Kubectl
from knn_devtools.tools import REPO_ROOT

if TYPE_CHECKING:
    from tests.e2e.e2e_support import (
        PRODUCTS_VECTORS,
        query_products,
        wait_for,
        write_products_dataset,
    )
else:
    from e2e_support import PRODUCTS_VECTORS, query_products, wait_for, write_products_dataset

EXAMPLE = REPO_ROOT / "examples" / "local-cluster" / "products.yaml"
VECTORS = PRODUCTS_VECTORS


def _status(kubectl: Kubectl) -> dict[str, Any]:
    obj = kubectl.json("-n", "demo", "get", "knn", "products")
    status: dict[str, Any] = obj.get("status") or {}
    return status


def _conditions(status: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status.get("conditions", [])}


def _diagnostics(kubectl: Kubectl) -> str:
    diag = kubectl.run("-n", "demo", "get", "knn,all,events", check=False).stdout
    ops = kubectl.run(
        "-n", "knn-system", "logs", "deployment/knn-operator", "--tail=60", check=False
    ).stdout
    return f"{diag}\n--- operator ---\n{ops}"


def _wait_status(
    kubectl: Kubectl, what: str, check: Callable[[dict[str, Any]], bool], timeout: float = 300
) -> tuple[dict[str, Any], list[str]]:
    """Waits until ``check(status)``; returns the status and the phases seen on the way."""
    phases: list[str] = []

    def probe() -> dict[str, Any] | None:
        status = _status(kubectl)
        phase = status.get("phase", "")
        if phase and (not phases or phases[-1] != phase):
            phases.append(phase)
        return status if check(status) else None

    try:
        return wait_for(what, probe, timeout=timeout), phases
    except AssertionError as err:
        raise AssertionError(f"{err}\nphases {phases}\n{_diagnostics(kubectl)}") from None


def _try_query(
    kubectl: Kubectl, vector: np.ndarray[Any, np.dtype[np.float32]]
) -> dict[str, Any] | None:
    try:
        return query_products(kubectl, vector.tolist())
    except OSError:
        return None


def _patch(kubectl: Kubectl, spec: dict[str, Any]) -> None:
    kubectl.run(
        "-n", "demo", "patch", "knn", "products", "--type=merge", "-p", json.dumps({"spec": spec})
    )


@pytest.fixture(scope="module")
def dataset(cluster: Cluster) -> np.ndarray[Any, np.dtype[np.float32]]:
    return write_products_dataset(cluster)


def test_build_serve_query(
    cluster: Cluster, kubectl: Kubectl, dataset: np.ndarray[Any, np.dtype[np.float32]]
) -> None:
    began = time.monotonic()
    kubectl.run("apply", "-f", str(EXAMPLE))
    status, phases = _wait_status(
        kubectl, "KnnIndex demo/products Ready", lambda s: _conditions(s).get("Ready") == "True"
    )
    elapsed = time.monotonic() - began
    assert "Building" in phases and phases[-1] == "Serving", phases
    build = status["builds"][-1]
    assert build["outcome"] == "Succeeded"
    assert build["vectors"] == VECTORS
    assert build["recall"] >= 0.9
    print(f"KnnIndex Ready {elapsed:.1f}s after apply; phases {phases}; build {build}")
    answer = query_products(kubectl, dataset[123].tolist())
    assert len(answer["ids"]) == 5
    assert answer["distances"] == sorted(answer["distances"])
    assert answer["version"] == status["stableVersion"]


def test_prometheus_discovers_and_scrapes_the_serving_pod(
    cluster: Cluster, kubectl: Kubectl
) -> None:
    """Prometheus finds the serving pod through the apiserver and keeps the server's own
    identity labels (honor_labels), as the analysis queries expect."""
    revision = _status(kubectl)["stableRevision"]
    url = cluster.endpoints["prometheus"]
    # The server labels its series with the revision it serves (knn-serve --revision).
    selector = f'namespace="demo",index="products",version="{revision}"'
    query = urllib.parse.quote(f"knn_recall_ratio{{{selector}}}")

    def series() -> list[dict[str, Any]] | None:
        with urllib.request.urlopen(f"{url}/api/v1/query?query={query}", timeout=5) as r:
            result: list[dict[str, Any]] = json.load(r)["data"]["result"]
        return result or None

    found = wait_for("knn_recall_ratio of demo/products in Prometheus", series, timeout=90)
    labels = found[0]["metric"]
    assert labels["job"] == "knn-serving"
    assert labels["pod"].startswith(f"products-{revision}-")
    assert float(found[0]["value"][1]) >= 0.9


def test_bad_source_fails_with_the_builders_message_and_stable_keeps_serving(
    kubectl: Kubectl, dataset: np.ndarray[Any, np.dtype[np.float32]]
) -> None:
    stable = _status(kubectl)["stableVersion"]
    _patch(
        kubectl,
        {
            "source": {"uri": "pvc://knn-data/datasets/missing.npy"},
            "build": {"backoffLimit": 0},
        },
    )
    # A failed rebuild beside a serving stable: Built=False, the phase stays Serving.
    status, _ = _wait_status(
        kubectl,
        "Built=False with the stable serving",
        lambda s: _conditions(s).get("Built") == "False" and s.get("phase") == "Serving",
        timeout=180,
    )
    failed = status["builds"][-1]
    assert failed["outcome"] == "Failed"
    # The builder's own words (knn-build's summary), not a generic Job failure.
    assert "missing.npy" in failed["message"], failed
    assert status["stableVersion"] == stable
    assert query_products(kubectl, dataset[7].tolist())["version"] == stable
    # Back to the good source: the same inputs are the same version, serving again.
    _patch(kubectl, {"source": {"uri": "pvc://knn-data/datasets/products.npy"}})
    _wait_status(kubectl, "Serving again", lambda s: s.get("phase") == "Serving", timeout=120)
    assert _status(kubectl)["stableVersion"] == stable


def test_killed_serving_pod_is_replaced_and_the_index_is_ready_again(
    kubectl: Kubectl, dataset: np.ndarray[Any, np.dtype[np.float32]]
) -> None:
    version = _status(kubectl)["stableVersion"]
    # The serving Deployment is products-<version>; its pods carry that prefix.
    pods = [
        p
        for p in kubectl.json("-n", "demo", "get", "pods")["items"]
        if p["metadata"]["name"].startswith(f"products-{version}-")
    ]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    old = pods[0]["metadata"]["name"]
    kubectl.run("-n", "demo", "delete", "pod", old, "--grace-period=0", "--force", "--wait=false")

    def replaced() -> str | None:
        for p in kubectl.json("-n", "demo", "get", "pods")["items"]:
            name = p["metadata"]["name"]
            ready = {c["type"]: c["status"] for c in p["status"].get("conditions", [])}
            if (
                name != old
                and name.startswith(f"products-{version}-")
                and ready.get("Ready") == "True"
            ):
                return str(name)
        return None

    new = wait_for("a new serving pod, Ready", replaced, timeout=120)
    assert new != old
    status = _status(kubectl)
    assert status["phase"] == "Serving" and _conditions(status).get("Ready") == "True"
    # One replica: the Service has no endpoint until kube-proxy programs the new pod's.
    answer = wait_for("the Service to answer again", lambda: _try_query(kubectl, dataset[9]))
    assert answer["version"] == version


def test_operator_killed_mid_build_resumes(
    kubectl: Kubectl, dataset: np.ndarray[Any, np.dtype[np.float32]]
) -> None:
    before = _status(kubectl)["stableVersion"]
    _patch(kubectl, {"hnsw": {"efConstruction": 120}})

    def new_job() -> str | None:
        jobs = kubectl.run("-n", "demo", "get", "jobs", "-o", "name").stdout.split()
        fresh = [j for j in jobs if j.startswith("job.batch/products-build-") and before not in j]
        return fresh[0] if fresh else None

    # The builder Job of the new version exists (the phase says Progressing: a stable
    # version keeps serving meanwhile): kill the operator now, mid-build.
    job = wait_for("the new version's builder Job", new_job, timeout=60)
    kubectl.run(
        "-n",
        "knn-system",
        "delete",
        "pod",
        "-l",
        "app.kubernetes.io/name=knn-operator",
        "--grace-period=0",
        "--force",
    )
    status, _ = _wait_status(
        kubectl,
        "a new stable version after the operator's restart",
        lambda s: s.get("phase") == "Serving" and s.get("stableVersion") not in (None, before),
        timeout=300,
    )
    assert job.endswith(status["stableVersion"])
    assert status["builds"][-1]["outcome"] == "Succeeded"
    # The replaced version's pods answer for their preStop sleep while kube-proxy
    # catches up: the Service's answers move to the new version, none fails.
    answer = wait_for(
        "the Service to answer from the new version",
        lambda: (
            (a := _try_query(kubectl, dataset[11]))
            and a["version"] == status["stableVersion"]
            and a
        ),
    )
    assert answer["version"] == status["stableVersion"]


def test_deleting_the_index_collects_what_it_owned(kubectl: Kubectl) -> None:
    kubectl.run("-n", "demo", "delete", "knn", "products", "--wait=true", "--timeout=120s")

    def owned_gone() -> bool:
        left = kubectl.run(
            "-n", "demo", "get", "jobs,deployments,services,replicasets", "-o", "name"
        ).stdout.split()
        return not [n for n in left if "products" in n]

    wait_for(
        "the garbage collector to remove the index's Jobs, Deployments, Services",
        owned_gone,
        timeout=120,
    )
