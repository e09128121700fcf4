"""Helpers of the end-to-end tier (imported as `e2e_support`; see conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from knn_devtools.cluster import Cluster, ClusterConfig
from knn_devtools.incluster import IMAGE_UID, PROMETHEUS_IN_CLUSTER, data_dir
from knn_devtools.kubectl import Kubectl
from knn_devtools.synthetic import clustered

T = TypeVar("T")

# Address ranges of the test cluster: different from `make up`'s defaults.
E2E_POD_CIDR = "10.245.0.0/24"
E2E_SERVICE_CIDR = "10.97.0.0/16"
E2E_NODE_IP = "10.251.0.1"


# The dataset that examples/local-cluster/products.yaml names.
PRODUCTS_VECTORS, PRODUCTS_DIMENSION = 20_000, 64


def write_products_dataset(cluster: Cluster) -> np.ndarray[Any, np.dtype[np.float32]]:
    """datasets/products.npy on the cluster's shared storage (the example's source)."""
    target = data_dir(cluster) / "datasets"
    target.mkdir(parents=True, exist_ok=True)
    os.chown(target, IMAGE_UID, IMAGE_UID)
    data = clustered(PRODUCTS_VECTORS, PRODUCTS_DIMENSION, seed=11).astype(np.float32)
    np.save(target / "products.npy", data)
    return data


def e2e_config(state_dir: Path, *, addons: tuple[str, ...] = ("dns",)) -> ClusterConfig:
    return ClusterConfig(
        state_dir=state_dir,
        name="e2e",
        node_name="e2e-node",
        node_ip=E2E_NODE_IP,
        pod_cidr=E2E_POD_CIDR,
        service_cidr=E2E_SERVICE_CIDR,
        addons=addons,
        startup_timeout=float(os.environ.get("KNN_E2E_STARTUP_TIMEOUT", "240")),
    )


def wait_for(what: str, probe: Callable[[], T | None], *, timeout: float = 120.0) -> T:
    """Polls ``probe`` until it returns something truthy; fails naming ``what``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


def wait_default_service_account(kubectl: Kubectl, namespace: str = "default") -> None:
    """The ServiceAccount admission refuses pods until the controller made it."""
    wait_for(
        f"ServiceAccount default in {namespace}",
        lambda: kubectl.run("-n", namespace, "get", "sa", "default", check=False).returncode == 0,
    )


def host_diff(before: dict[str, list[str]], after: dict[str, list[str]]) -> dict[str, object]:
    """What differs between two :func:`knn_devtools.cluster.host_snapshot` results."""
    out: dict[str, object] = {}
    for key in before.keys() | after.keys():
        b, a = set(before.get(key, [])), set(after.get(key, []))
        if a != b:
            out[key] = {"left behind": sorted(a - b), "removed": sorted(b - a)}
    return out


def wait_products_ready(kubectl: Kubectl, timeout: int = 300) -> None:
    """demo/products (examples/local-cluster/products.yaml) Ready."""
    kubectl.run(
        "-n", "demo", "wait", "--for=condition=Ready", "knn/products", f"--timeout={timeout}s",
        timeout=timeout + 20,
    )  # fmt: skip


def query_products(kubectl: Kubectl, vector: list[float], k: int = 5) -> dict[str, Any]:
    """POST /v1/query to demo/products' Service, by ClusterIP from the host (kube-proxy)."""
    vip = kubectl.json("-n", "demo", "get", "service", "products")["spec"]["clusterIP"]
    request = urllib.request.Request(
        f"http://{vip}/v1/query",
        data=json.dumps({"vector": vector, "k": k}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer: dict[str, Any] = json.load(response)
    return answer


def index_status(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    status: dict[str, Any] = kubectl.json("-n", namespace, "get", "knn", name).get("status") or {}
    return status


def wait_index(
    kubectl: Kubectl,
    namespace: str,
    name: str,
    what: str,
    check: Callable[[dict[str, Any]], Any],
    timeout: float = 300,
) -> dict[str, Any]:
    """The KnnIndex's status once ``check(status)`` holds; on timeout, the status and the
    operator's log tail in the failure."""

    def probe() -> dict[str, Any] | None:
        s = index_status(kubectl, namespace, name)
        return s if check(s) else None

    try:
        return wait_for(what, probe, timeout=timeout)
    except AssertionError as err:
        logs = kubectl.run(
            "-n", "knn-system", "logs", "deployment/knn-operator", "--tail=40", check=False
        ).stdout
        status = json.dumps(index_status(kubectl, namespace, name), indent=1)
        raise AssertionError(f"{err}\n{status}\n{logs}") from None


KUBECTL_KNN = Path(sys.executable).parent / "kubectl-knn"


def kubectl_knn(kubectl: Kubectl, *args: str) -> str:
    """`kubectl knn ARGS` as a user runs it (the plugin on PATH next to kubectl)."""
    env = dict(os.environ)
    env["KUBECONFIG"] = str(kubectl.kubeconfig)
    env["PATH"] = f"{kubectl.binary.parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(
        [str(KUBECTL_KNN), *args], capture_output=True, text=True, env=env, timeout=60, check=True
    )
    return done.stdout


def judged_rollout(**thresholds: float) -> dict[str, Any]:
    """`spec.rollout` of a canary at 50% for 10 s, judged every 4 s on `thresholds` by
    the cluster's Prometheus; the first failed run rolls it back."""
    return {
        "steps": [{"setWeight": 50}, {"pause": {"duration": "10s"}}],
        "analysis": {
            "prometheus": {"address": PROMETHEUS_IN_CLUSTER, "timeout": "2s"},
            "interval": "4s",
            "scrapeInterval": "2s",
            "failureLimit": 0,
            "inconclusiveLimit": 30,
            "thresholds": thresholds,
        },
    }
