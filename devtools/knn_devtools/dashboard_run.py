"""A real run for the dashboard's picture: the real operator on the real API server
(with the chart's RBAC) builds a KnnIndex with the real `knn-build`, serves it with real
`knn-serve`s (knn_devtools.standin runs what a node would), and rolls out two canaries
judged by a real Prometheus under steady query load: one promoted (a higher efSearch),
one rolled back by the analysis on recall (an efSearch too low for the threshold).

    with real_run(workdir, say=print) as run:
        run.prometheus.url, run.started, run.ended, run.namespace

Takes about three minutes on two cores.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
import numpy as np
from knn_contracts import api
from knn_contracts import rollout as names
from knn_contracts.artifact import CurvePoint, recall_at

from knn_devtools.controlplane import ControlPlane
from knn_devtools.crds import install_crds
from knn_devtools.knnoperator import CLUSTER_ROLE_FILE, CRD_FILES, ROLE_NAME, OperatorProcess
from knn_devtools.knnserve import LOOPBACK
from knn_devtools.kubectl import Kubectl
from knn_devtools.promserver import Prometheus
from knn_devtools.rbac import service_account_with_role
from knn_devtools.standin import StandIn
from knn_devtools.synthetic import clustered
from knn_devtools.tools import tool_path

NAME: Final = "products"
NAMESPACE: Final = "shop"
N, DIM = 20_000, 64
STABLE_EF, GOOD_EF, LOW_EF = 64, 128, 10
OPERATOR_JOB, SERVING_JOB = "knn-operator", "knn-serve"
# The canary holds half the traffic for this long before the last step.
PAUSE: Final = "40s"


@dataclass
class Run:
    prometheus: Prometheus
    namespace: str
    started: float
    ended: float = 0.0


class Load:
    """Queries at a steady pace to every running server in turn (as a Service spreads
    them), on a thread, so every revision has live traffic."""

    def __init__(self, pods: StandIn, rps: float = 30.0) -> None:
        self.pods, self.rps = pods, rps
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rng = np.random.default_rng(8)
        queries = clustered(500, DIM, sample_seed=123)
        with httpx.Client(timeout=10.0, trust_env=False) as client:
            i = 0
            while not self._stop.wait(1.0 / self.rps):
                servers = list(self.pods.servers.values())
                if not servers:
                    continue
                url = servers[i % len(servers)].url
                vector = queries[int(rng.integers(len(queries)))].tolist()
                with contextlib.suppress(httpx.HTTPError):  # a server stopping mid-request
                    client.post(f"{url}/v1/query", json={"vector": vector, "k": 10})
                i += 1

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _status(kubectl: Kubectl) -> dict[str, Any]:
    out = kubectl.run("get", "knn", NAME, "-n", NAMESPACE, "-o", "json")
    status: dict[str, Any] = json.loads(out.stdout).get("status") or {}
    return status


def _wait(
    what: str,
    kubectl: Kubectl,
    pods: StandIn,
    done: Callable[[dict[str, Any]], bool],
    timeout: float = 240.0,
) -> dict[str, Any]:
    """Runs the stand-in until the KnnIndex's status satisfies `done`."""
    deadline = time.monotonic() + timeout
    while True:
        pods.sync()
        status = _status(kubectl)
        if done(status):
            return status
        if status.get("phase") == names.PHASE_FAILED:
            raise RuntimeError(f"{what}: the KnnIndex failed: {status.get('message')}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f}s; status {status}")
        time.sleep(0.5)


def _idle(pods: StandIn, seconds: float) -> None:
    """Lets time pass with the stand-in running (scale-downs take effect)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pods.sync()
        time.sleep(0.5)


def _spec(source: Path, storage: Path, ef: int, prom_url: str, min_recall: float) -> Any:
    return {
        "source": {"uri": f"file://{source}", "dimension": DIM},
        "storage": {"uri": f"file://{storage}"},
        "metric": "cosine",
        "hnsw": {"m": 8, "efConstruction": 64, "efSearch": ef},
        "build": {"validation": {"probeQueries": 500, "k": 10, "minRecall": 0.3}},
        "serving": {"replicas": 1, "probeIntervalSeconds": 1},
        "rollout": {
            "steps": [{"setWeight": 50}, {"pause": {"duration": PAUSE}}],
            "analysis": {
                "prometheus": {"address": prom_url, "timeout": "2s"},
                "interval": "5s",
                "scrapeInterval": "1s",
                "failureLimit": 1,
                "inconclusiveLimit": 20,
                "thresholds": {"minRecall": min_recall},
            },
        },
    }


def _apply(kubectl: Kubectl, spec: Any) -> None:
    body = {"apiVersion": api.API_VERSION, "kind": api.KNN_INDEX_KIND,
            "metadata": {"name": NAME, "namespace": NAMESPACE}, "spec": spec}  # fmt: skip
    kubectl.run("apply", "-f", "-", stdin=json.dumps(body))


@contextlib.contextmanager
def real_run(workdir: Path, say: Callable[[str], None] = print) -> Iterator[Run]:
    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / "vectors.npy"
    np.save(source, clustered(N, DIM), allow_pickle=False)
    with contextlib.ExitStack() as stack:
        cp = stack.enter_context(ControlPlane(log_dir=workdir / "controlplane", echo=None))
        kubectl = cp.kubectl()
        say("control plane up; installing the CRD and the chart's RBAC")
        install_crds(kubectl, CRD_FILES)
        kubectl.run("create", "namespace", NAMESPACE)
        # No controller manager runs: the namespace's `default` ServiceAccount, which the
        # builder Pods use, is made by hand.
        kubectl.run("create", "serviceaccount", "default", "-n", NAMESPACE)
        kubectl.run("apply", "--server-side", "-f", str(CLUSTER_ROLE_FILE))
        account = service_account_with_role(
            kubectl, namespace=NAMESPACE, name="knn-operator", role=ROLE_NAME,
            cluster_wide=True, kubeconfig_path=workdir / "operator.kubeconfig",
        )  # fmt: skip
        operator = OperatorProcess(account.kubeconfig, workdir / "operator.log", resync_seconds=2)
        prom = Prometheus(
            tool_path("prometheus"), workdir / "prometheus", [SERVING_JOB, OPERATOR_JOB]
        )
        prom.start()
        stack.callback(prom.stop)
        operator.start()
        stack.callback(operator.stop)
        prom.set_targets(OPERATOR_JOB, [f"{LOOPBACK}:{operator.metrics_port}"])
        pods = StandIn(
            kubectl, NAMESPACE, workdir / "pods", lambda t: prom.set_targets(SERVING_JOB, t)
        )
        stack.callback(pods.stop)
        run = Run(prom, NAMESPACE, time.time())
        storage = workdir / "artifacts"

        say(f"KnnIndex {NAMESPACE}/{NAME}: {N} vectors of {DIM}, efSearch {STABLE_EF}")
        _apply(kubectl, _spec(source, storage, STABLE_EF, prom.url, 0.5))
        status = _wait("Serving", kubectl, pods, lambda s: s.get("phase") == names.PHASE_SERVING)
        curve = {
            int(p["efSearch"]): float(p["recall"])
            for p in status["builds"][-1].get("recallCurve", [])
        }
        say(f"serving {status['stableRevision']}, recall curve {curve}")
        with Load(pods):
            _idle(pods, 20)  # a baseline before the first rollout
            # Between what the stable and the low-efSearch canary really reach.
            threshold = _threshold(curve)
            say(f"canary 1: efSearch {GOOD_EF}, minRecall {threshold}")
            _apply(kubectl, _spec(source, storage, GOOD_EF, prom.url, threshold))
            before = status["stableRevision"]
            status = _wait(
                "promoted",
                kubectl,
                pods,
                lambda s: (
                    s.get("stableRevision") not in (None, before) and not s.get("canaryRevision")
                ),
            )
            say(f"promoted {status['stableRevision']}")
            _idle(pods, 20)
            say(f"canary 2: efSearch {LOW_EF}, minRecall {threshold}")
            _apply(kubectl, _spec(source, storage, LOW_EF, prom.url, threshold))
            status = _wait(
                "rolled back", kubectl, pods, lambda s: s.get("phase") == names.PHASE_ROLLED_BACK
            )
            say(f"rolled back: {status['rolledBack']['message']}")
            _idle(pods, 25)
        run.ended = time.time()
        yield run


def _threshold(curve: dict[int, float]) -> float:
    """Halfway between the recall the build recorded at the low and the stable efSearch
    (the held-out probes' recall, what the analysis reads from the servers)."""
    # Search time is not what the threshold is about; the curve's recall is.
    points = [CurvePoint(ef_search=ef, recall=r, latency_us=0.0) for ef, r in curve.items()]
    low, high = recall_at(points, LOW_EF), recall_at(points, STABLE_EF)
    if low is None or high is None or high - low < 0.02:
        raise RuntimeError(f"the build's recall curve {curve} does not separate the canaries")
    return round((low + high) / 2, 3)
