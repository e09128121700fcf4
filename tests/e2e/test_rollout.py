"""Rollouts on the real node: a KnnIndex whose new revisions earn traffic in canary
steps through the index's Service (kube-proxy spreads it over the revisions' pods),
judged by the operator's analysis in the cluster's Prometheus, which discovers the
pods through the apiserver. A good canary is promoted; a canary whose efSearch
passes the build gate but misses the analysis threshold is rolled back, with no
test writing any status. `kubectl knn status` output comes from these runs."""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import yaml
from knn_devtools.cluster import Cluster
from knn_devtools.incluster import IMAGE_UID, data_dir
from knn_devtools.kubectl import Kubectl
from knn_devtools.synthetic import clustered
from knn_devtools.tools import REPO_ROOT

if TYPE_CHECKING:
    from tests.e2e.e2e_support import (
        index_status,
        judged_rollout,
        kubectl_knn,
        wait_for,
        wait_index,
    )
else:
    from e2e_support import index_status, judged_rollout, kubectl_knn, wait_for, wait_index

NAME, NS = "catalog", "demo"
EXAMPLE = REPO_ROOT / "examples" / "local-cluster" / "products.yaml"
VECTORS, DIMENSION = 20_000, 64
STABLE_EF, GOOD_EF, BAD_EF = 64, 128, 12


def _status(kubectl: Kubectl) -> dict[str, Any]:
    return index_status(kubectl, NS, NAME)


def _wait(kubectl: Kubectl, what: str, check: Any, timeout: float = 300) -> dict[str, Any]:
    return wait_index(kubectl, NS, NAME, what, check, timeout)


def knn_status(kubectl: Kubectl) -> str:
    return kubectl_knn(kubectl, "-n", NS, "status", NAME)


class Traffic:
    """Queries through the index's Service (ClusterIP, kube-proxy), on a thread."""

    def __init__(self, kubectl: Kubectl, data: np.ndarray[Any, np.dtype[np.float32]]) -> None:
        self.vip = kubectl.json("-n", NS, "get", "service", NAME)["spec"]["clusterIP"]
        self.data, self.answered, self.failed = data, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for i in range(200_000):  # bounded; stopped long before
            if self._stop.wait(0.05):
                return
            body = json.dumps({"vector": self.data[i % len(self.data)].tolist(), "k": 10})
            request = urllib.request.Request(
                f"http://{self.vip}/v1/query",
                data=body.encode(),
                headers={"content-type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as r:
                    self.answered += r.status == 200
            except OSError:
                self.failed += 1

    def keep_until(self, answered: int, timeout: float = 60.0) -> None:
        """Keep the traffic flowing until `answered` queries were answered: a rollout
        that ends quickly must still have been judged under real traffic, and the
        stable revision must answer after it."""
        wait_for(f"{answered} answered queries", lambda: self.answered >= answered, timeout=timeout)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@pytest.fixture(scope="module")
def index(cluster: Cluster, kubectl: Kubectl) -> np.ndarray[Any, np.dtype[np.float32]]:
    """The namespace and claim of the example, a dataset, and a KnnIndex serving it."""
    target = data_dir(cluster) / "datasets"
    target.mkdir(parents=True, exist_ok=True)
    os.chown(target, IMAGE_UID, IMAGE_UID)
    data = clustered(VECTORS, DIMENSION, seed=23).astype(np.float32)
    np.save(target / "catalog.npy", data)
    docs = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d and d["kind"] != "KnnIndex"]
    kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
    spec = {
        "source": {"uri": "pvc://knn-data/datasets/catalog.npy", "dimension": DIMENSION},
        "metric": "cosine",
        "hnsw": {"m": 8, "efConstruction": 64, "efSearch": STABLE_EF},
        "build": {"validation": {"probeQueries": 300, "k": 10, "minRecall": 0.5}},
        "storage": {"uri": "pvc://knn-data/artifacts/catalog"},
        "serving": {"replicas": 1, "probeIntervalSeconds": 2},
    }
    manifest = {
        "apiVersion": "knn.dev/v1alpha1",
        "kind": "KnnIndex",
        "metadata": {"name": NAME, "namespace": NS},
        "spec": spec,
    }
    kubectl.run("apply", "-f", "-", stdin=json.dumps(manifest))
    _wait(kubectl, "catalog Serving", lambda s: s.get("phase") == "Serving", timeout=420)
    return data


def _recorded(status: dict[str, Any], ef: int) -> float:
    curve = status["builds"][-1]["recallCurve"]
    return float(max(p["recall"] for p in curve if p["efSearch"] <= ef))


def _rollout(kubectl: Kubectl, ef: int, min_recall: float, **thresholds: float) -> None:
    patch = {
        "hnsw": {"efSearch": ef},
        "rollout": judged_rollout(minRecall=min_recall, **thresholds),
    }
    kubectl.run("-n", NS, "patch", "knn", NAME, "--type=merge", "-p", json.dumps({"spec": patch}))


def test_a_good_canary_earns_traffic_and_is_promoted(
    kubectl: Kubectl, index: np.ndarray[Any, np.dtype[np.float32]]
) -> None:
    before = _status(kubectl)
    threshold = round(_recorded(before, STABLE_EF) - 0.03, 3)
    with Traffic(kubectl, index) as traffic:
        _rollout(kubectl, GOOD_EF, threshold)
        mid = _wait(
            kubectl, "the canary at its pause", lambda s: (s.get("rollout") or {}).get("step") == 1
        )
        print(f"\n$ kubectl knn -n {NS} status {NAME}\n{knn_status(kubectl)}")
        assert mid["canaryWeight"] == 50, mid  # one canary pod beside one stable pod
        after = _wait(
            kubectl,
            "the canary promoted",
            lambda s: s.get("stableRevision") not in (None, before["stableRevision"]),
        )
        traffic.keep_until(51)
    assert after["servingEfSearch"] == GOOD_EF and after["phase"] == "Serving"
    assert after["analysis"]["lastResult"] == "Successful"
    assert traffic.answered > 50, traffic.answered
    assert traffic.failed <= max(3, traffic.answered // 20), (traffic.answered, traffic.failed)


def first_breach(prometheus: str, revision: str, threshold: float, until: dt.datetime) -> float:
    """Unix time of the first scraped sample of the canary's recall under `threshold`:
    the breach as Prometheus first saw it."""
    query = urllib.parse.urlencode(
        {
            "query": f'knn_recall_ratio{{version="{revision}"}}',
            "start": f"{until.timestamp() - 300:.0f}",
            "end": f"{until.timestamp():.0f}",
            "step": "1",
        }
    )
    with urllib.request.urlopen(f"{prometheus}/api/v1/query_range?{query}", timeout=10) as r:
        result = json.load(r)["data"]["result"]
    samples = [(float(t), float(v)) for series in result for t, v in series["values"]]
    return min(t for t, v in samples if v < threshold)


def test_a_canary_under_the_recall_threshold_is_rolled_back(
    cluster: Cluster, kubectl: Kubectl, index: np.ndarray[Any, np.dtype[np.float32]]
) -> None:
    before = _status(kubectl)
    low, good = _recorded(before, BAD_EF), _recorded(before, GOOD_EF)
    assert low >= 0.5 and low < good - 0.05, (low, good)
    threshold = round((low + good) / 2, 3)
    with Traffic(kubectl, index) as traffic:
        _rollout(kubectl, BAD_EF, threshold)
        rolled = _wait(kubectl, "the canary rolled back", lambda s: s.get("rolledBack"))
        print(f"\n$ kubectl knn -n {NS} status {NAME}\n{knn_status(kubectl)}")
        restored = _wait(
            kubectl,
            "all traffic back on the stable revision",
            lambda s: (s.get("rolledBack") or {}).get("trafficRestoredAt"),
        )
        traffic.keep_until(51)
    rb = restored["rolledBack"]
    assert rb["cause"] == "AnalysisFailed" and "recall" in rb["message"], rb
    assert rolled["phase"] == "RolledBack"
    assert restored["stableRevision"] == before["stableRevision"]
    canary = kubectl.json("-n", NS, "get", "deployment", f"{NAME}-{rb['revision']}")
    assert canary["spec"]["replicas"] == 0
    decided = dt.datetime.fromisoformat(rb["at"].replace("Z", "+00:00"))
    back = dt.datetime.fromisoformat(rb["trafficRestoredAt"].replace("Z", "+00:00"))
    seen = first_breach(cluster.endpoints["prometheus"], rb["revision"], threshold, back)
    print(
        f"breach first scraped to 100% stable: {back.timestamp() - seen:.0f}s; analysis "
        f"decision to 100% stable: {(back - decided).total_seconds():.0f}s (interval 4s, "
        "scrape 2s, failureLimit 0, timestamps to the second)"
    )
    assert traffic.answered > 50, traffic.answered
    # A pod leaving the Service can cost a request in flight; never a stream of them.
    assert traffic.failed <= max(3, traffic.answered // 20), (traffic.answered, traffic.failed)


SLOW_EF, LATENCY_LIMIT_MS = 4096, 2.0


def test_a_slow_canary_under_real_traffic_is_rolled_back_on_latency(
    kubectl: Kubectl, index: np.ndarray[Any, np.dtype[np.float32]]
) -> None:
    """Recall is fine at the widest efSearch; every query walks much of the graph."""
    before = _status(kubectl)
    with Traffic(kubectl, index) as traffic:
        _rollout(kubectl, SLOW_EF, 0.5, p95LatencyMs=LATENCY_LIMIT_MS)
        status = _wait(
            kubectl,
            "the slow canary rolled back",
            lambda s: (s.get("rolledBack") or {}).get("revision") not in (None, _old(before)),
        )
        traffic.keep_until(51)
    rb = status["rolledBack"]
    assert rb["cause"] == "AnalysisFailed" and "latency" in rb["message"], rb
    assert status["stableRevision"] == before["stableRevision"]
    failed = [m for m in status["analysis"]["lastMeasurements"] if m["result"] == "Failed"]
    assert failed and failed[-1]["check"] == "latency-p95", failed
    p95 = failed[-1]["value"]
    print(f"\nslow canary: p95 {p95:.1f} ms > {LATENCY_LIMIT_MS} ms; {rb['message']}")
    assert traffic.answered > 50, traffic.answered


def _old(status: dict[str, Any]) -> str | None:
    """The revision an earlier story rolled back, if any."""
    return (status.get("rolledBack") or {}).get("revision")


def test_a_builder_pod_missing_its_secret_is_reported(
    kubectl: Kubectl, index: np.ndarray[Any, np.dtype[np.float32]]
) -> None:
    """The kubelet cannot start a pod whose Secret does not exist; the operator says so
    instead of Building in silence."""
    manifest = {
        "apiVersion": "knn.dev/v1alpha1",
        "kind": "KnnIndex",
        "metadata": {"name": "secretless", "namespace": NS},
        "spec": {
            "source": {
                "uri": "pvc://knn-data/datasets/catalog.npy",
                "dimension": DIMENSION,
                "secretName": "no-such-secret",
            },
            "storage": {"uri": "pvc://knn-data/artifacts/secretless"},
            "serving": {"replicas": 1},
        },
    }
    kubectl.run("apply", "-f", "-", stdin=json.dumps(manifest))
    try:

        def told() -> dict[str, Any] | None:
            obj = kubectl.json("-n", NS, "get", "knn", "secretless")
            status: dict[str, Any] = obj.get("status") or {}
            return status if "no-such-secret" in (status.get("message") or "") else None

        status = wait_for("the missing Secret named in status", told, timeout=120)
        assert status["phase"] == "Building"
        assert "CreateContainerConfigError" in status["message"], status["message"]
        events = kubectl.json("-n", NS, "get", "events")["items"]
        assert any(e["reason"] == "BuilderPodWaiting" for e in events)
    finally:
        kubectl.run("-n", NS, "delete", "knn", "secretless", "--wait=true", timeout=120)
