"""A ClusterModel on the real node: trained by a builder Job, served by knn-serve
behind its Service (`/v1/assign` answered through kube-proxy), then a retrained
version whose probe inertia regresses is judged by the operator's analysis in
the cluster's Prometheus and rolled back, with no test writing any status.
`kubectl get clm` output in the README comes from these runs."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import yaml
from knn_devtools.cluster import Cluster
from knn_devtools.incluster import IMAGE_UID, data_dir
from knn_devtools.kubectl import Kubectl
from knn_devtools.tools import REPO_ROOT

if TYPE_CHECKING:
    from tests.e2e.e2e_support import judged_rollout, kubectl_knn, wait_for, write_products_dataset
else:
    from e2e_support import judged_rollout, kubectl_knn, wait_for, write_products_dataset

NAME, NS = "blobs", "demo"
EXAMPLE_NAME = "segments"  # examples/local-cluster/segments.yaml
EXAMPLE = REPO_ROOT / "examples" / "local-cluster" / "products.yaml"
BLOBS, PER_BLOB, DIMENSION = 6, 1_000, 16


def blobs() -> tuple[np.ndarray[Any, np.dtype[np.float32]], np.ndarray[Any, Any]]:
    """Six well-separated Gaussian blobs: k=6 fits them, k=2 cannot."""
    rng = np.random.default_rng(5)
    centres = rng.normal(scale=10.0, size=(BLOBS, DIMENSION))
    truth = np.repeat(np.arange(BLOBS), PER_BLOB)
    data = centres[truth] + rng.normal(size=(BLOBS * PER_BLOB, DIMENSION))
    order = rng.permutation(len(truth))
    return data[order].astype(np.float32), centres


def _status(kubectl: Kubectl) -> dict[str, Any]:
    status: dict[str, Any] = kubectl.json("-n", NS, "get", "clm", NAME).get("status") or {}
    return status


def _wait(kubectl: Kubectl, what: str, check: Any, timeout: float = 300) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        s = _status(kubectl)
        return s if check(s) else None

    try:
        return wait_for(what, probe, timeout=timeout)
    except AssertionError as err:
        logs = kubectl.run(
            "-n", "knn-system", "logs", "deployment/knn-operator", "--tail=40", check=False
        ).stdout
        raise AssertionError(f"{err}\n{json.dumps(_status(kubectl), indent=1)}\n{logs}") from None


def _spec(clusters: int, **rollout: Any) -> dict[str, Any]:
    return {
        "source": {"uri": "pvc://knn-data/datasets/blobs.npy", "dimension": DIMENSION},
        "kmeans": {"clusters": clusters, "nInit": 3},
        "build": {"validation": {"probePoints": 300, "minClusterFraction": 0.05}},
        "storage": {"uri": "pvc://knn-data/artifacts/blobs"},
        "serving": {"replicas": 1, "probeIntervalSeconds": 2},
        "rollout": rollout,
    }


@pytest.fixture(scope="module")
def model(cluster: Cluster, kubectl: Kubectl) -> Iterator[np.ndarray[Any, Any]]:
    """The example's namespace and claim, the blobs, and a ClusterModel serving k=6;
    deleted after the module (its pods would hold the node's CPU from later tests)."""
    target = data_dir(cluster) / "datasets"
    target.mkdir(parents=True, exist_ok=True)
    os.chown(target, IMAGE_UID, IMAGE_UID)
    data, centres = blobs()
    np.save(target / "blobs.npy", data)
    docs = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d and d["kind"] != "KnnIndex"]
    kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
    manifest = {
        "apiVersion": "knn.dev/v1alpha1",
        "kind": "ClusterModel",
        "metadata": {"name": NAME, "namespace": NS},
        "spec": _spec(BLOBS),
    }
    kubectl.run("apply", "-f", "-", stdin=json.dumps(manifest))
    _wait(kubectl, "segments Serving", lambda s: s.get("phase") == "Serving", timeout=420)
    yield centres
    kubectl.run("-n", NS, "delete", "clm", NAME, "--wait=true", "--timeout=120s", timeout=150)


def _assign(kubectl: Kubectl, vectors: list[list[float]]) -> dict[str, Any]:
    vip = kubectl.json("-n", NS, "get", "service", NAME)["spec"]["clusterIP"]
    request = urllib.request.Request(
        f"http://{vip}/v1/assign",
        data=json.dumps({"vectors": vectors}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        answer: dict[str, Any] = json.load(r)
    return answer


def test_a_model_is_served_and_assigns_through_its_service(
    kubectl: Kubectl, model: np.ndarray[Any, Any]
) -> None:
    status = _status(kubectl)
    table = kubectl.run("-n", NS, "get", "clm").stdout
    print(f"\n$ kubectl -n {NS} get clm\n{table}")
    assert status["clusters"] == BLOBS and status["silhouette"] > 0.5, status
    answer = _assign(kubectl, model.tolist())
    print(f"assign of the {BLOBS} true centres: {json.dumps(answer)[:300]}")
    ids = [a["cluster"] for a in answer["results"]]
    # Each true centre lands in a cluster of its own: the model recovered the blobs.
    assert sorted(ids) == list(range(BLOBS)), answer
    shown = kubectl_knn(kubectl, "-n", NS, "status", f"clm/{NAME}")
    print(f"\n$ kubectl knn -n {NS} status clm/{NAME}\n{shown}")
    assert f"ClusterModel {NAME}" in shown and f"k {BLOBS}  silhouette" in shown, shown


def test_a_canary_whose_inertia_regresses_is_rolled_back(
    kubectl: Kubectl, model: np.ndarray[Any, Any]
) -> None:
    before = _status(kubectl)
    rollout = judged_rollout(maxInertiaRatio=1.2)
    patch = {"spec": _spec(2, **rollout)}
    kubectl.run("-n", NS, "patch", "clm", NAME, "--type=merge", "-p", json.dumps(patch))
    rolled = _wait(kubectl, "the k=2 canary rolled back", lambda s: s.get("rolledBack"))
    print(f"\n$ kubectl -n {NS} get clm\n{kubectl.run('-n', NS, 'get', 'clm').stdout}")
    rb = rolled["rolledBack"]
    print(f"rolled back: {rb['message']}")
    assert rb["cause"] == "AnalysisFailed" and "inertia-ratio" in rb["message"], rb
    assert rolled["phase"] == "RolledBack"
    assert rolled["stableRevision"] == before["stableRevision"]
    failed = [m for m in rolled["analysis"]["lastMeasurements"] if m["result"] == "Failed"]
    assert failed and failed[-1]["check"] == "inertia-ratio" and failed[-1]["value"] > 1.2
    # The stable keeps answering through the Service.
    assert len(_assign(kubectl, model[:2].tolist())["results"]) == 2
    history = kubectl_knn(kubectl, "-n", NS, "history", f"clm/{NAME}")
    print(f"\n$ kubectl knn -n {NS} history clm/{NAME}\n{history}")
    assert "SILHOUETTE" in history and "RolledBack" in history, history


def test_a_canary_that_splits_real_clusters_is_rolled_back_on_its_silhouette(
    kubectl: Kubectl, model: np.ndarray[Any, Any]
) -> None:
    """k=12 on six blobs halves each of them: its probe points sit closer to their
    centroids than the stable's (inertia ratio below 1, a pass), but the halves of a
    blob are not apart (silhouette near 0): minProbeSilhouette rolls it back."""
    before = _status(kubectl)
    rollout = judged_rollout(maxInertiaRatio=1.2, minProbeSilhouette=0.5)
    earlier = (before.get("rolledBack") or {}).get("revision")
    patch = {"spec": _spec(2 * BLOBS, **rollout)}
    kubectl.run("-n", NS, "patch", "clm", NAME, "--type=merge", "-p", json.dumps(patch))
    rolled = _wait(
        kubectl,
        "the k=12 canary rolled back",
        lambda s: (s.get("rolledBack") or {}).get("revision") not in (None, earlier),
    )
    rb = rolled["rolledBack"]
    print(f"\nrolled back: {rb['message']}")
    assert rb["cause"] == "AnalysisFailed" and "probe-silhouette" in rb["message"], rb
    assert rolled["stableRevision"] == before["stableRevision"]
    last = {m["check"]: m for m in rolled["analysis"]["lastMeasurements"]}
    silhouette, ratio = last["probe-silhouette"], last["inertia-ratio"]
    print(f"probe silhouette {silhouette['value']:.4f}, inertia ratio {ratio['value']:.4f}")
    assert silhouette["result"] == "Failed" and silhouette["value"] < 0.5
    assert ratio["result"] == "Successful" and ratio["value"] < 1.0, ratio


def test_a_canary_whose_pods_cannot_be_created_is_reported_then_proceeds(
    kubectl: Kubectl, model: np.ndarray[Any, Any]
) -> None:
    """A real fault: a ResourceQuota of zero pods. A serving change (new pod labels: a
    new revision of the served version, nothing to build) gets a Deployment whose
    ReplicaSet cannot create its pod; the operator reports the Deployment controller's
    ReplicaFailure. Without the quota the pod is created and the rollout finishes."""
    before = _status(kubectl)
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "no-new-pods", "namespace": NS},
        "spec": {"hard": {"pods": "0"}},
    }
    kubectl.run("apply", "-f", "-", stdin=json.dumps(quota))
    try:
        spec = _spec(BLOBS, steps=[{"setWeight": 50}], analysis=None)
        spec["serving"]["pod"] = {"labels": {"story": "quota"}}
        kubectl.run(
            "-n", NS, "patch", "clm", NAME, "--type=merge", "-p", json.dumps({"spec": spec})
        )
        stuck = _wait(
            kubectl,
            "the canary reported as stalled",
            lambda s: "cannot become available" in (s.get("message") or ""),
            timeout=180,
        )
    finally:
        kubectl.run("-n", NS, "delete", "resourcequota", "no-new-pods", check=False)
    print(
        f"\n$ kubectl -n {NS} get clm {NAME} -o jsonpath='{{.status.message}}'\n{stuck['message']}"
    )
    progressing = next(c for c in stuck["conditions"] if c["type"] == "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "RevisionStalled")
    assert "FailedCreate" in stuck["message"] and "exceeded quota: no-new-pods" in stuck["message"]
    assert stuck["stableRevision"] == before["stableRevision"]
    events = kubectl.json("-n", NS, "get", "events", "--field-selector", "reason=RevisionStalled")
    assert events["items"] and {e["type"] for e in events["items"]} == {"Warning"}
    done = _wait(
        kubectl,
        "the new revision promoted once its pod can be created",
        lambda s: s.get("stableRevision") not in (None, before["stableRevision"]),
        timeout=300,
    )
    assert done["phase"] == "Serving" and not done.get("message"), done
    assert len(_assign(kubectl, model[:2].tolist())["results"]) == 2


def test_the_example_cluster_model_is_served(cluster: Cluster, kubectl: Kubectl) -> None:
    """examples/local-cluster/segments.yaml as a user applies it, on the demo's dataset:
    k chosen by silhouette in its range. Its `kubectl get clm` is the README's."""
    write_products_dataset(cluster)
    example = REPO_ROOT / "examples" / "local-cluster" / "segments.yaml"
    kubectl.run("apply", "-f", str(example))

    def serving() -> dict[str, Any] | None:
        obj = kubectl.json("-n", NS, "get", "clm", EXAMPLE_NAME)
        status: dict[str, Any] = obj.get("status") or {}
        return status if status.get("phase") == "Serving" else None

    try:
        status = wait_for("the example ClusterModel Serving", serving, timeout=600)
        print(f"\n$ kubectl -n {NS} get clm\n{kubectl.run('-n', NS, 'get', 'clm').stdout}")
        assert 4 <= status["clusters"] <= 8, status
    finally:
        kubectl.run("-n", NS, "delete", "clm", EXAMPLE_NAME, "--wait=true", timeout=120)
