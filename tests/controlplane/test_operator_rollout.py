"""Rollouts judged by a real Prometheus: the operator against the real API server,
the builder Job's own command run by the real `knn-build` on real files, each
serving Deployment's own command run as a real `knn-serve` on loopback, scraped by
a real Prometheus that discovers them as they start.

There is no kubelet in this tier: the test runs the pods' commands itself and
reports the Deployments available (DESIGN section 5, tier 3). No fault is
injected: a canary at a low efSearch really has lower recall, and the operator's
own analysis finds it in Prometheus.

Needs the control-plane tools and Debian's `prometheus`; fails, never skips.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import yaml
from knn_contracts.artifact import BuildSummary, recall_at
from knn_devtools import argocd
from knn_devtools.kubectl import Kubectl
from knn_devtools.synthetic import clustered
from knn_devtools.tools import REPO_ROOT
from knn_operator import rbac

if TYPE_CHECKING:
    from tests.controlplane import operator_support as ops
    from tests.dataplane import servers as sv
else:
    import operator_support as ops

    from tests.dataplane import servers as sv

pytestmark = [pytest.mark.controlplane, pytest.mark.prometheus]

N, DIM = 20_000, 64
STABLE_EF, LOW_EF, HIGH_EF = 128, 16, 256
GATE = 0.3  # build.validation.minRecall: the low efSearch passes it
NAME = "products"
ARGOCD_HEALTH = REPO_ROOT / "gitops" / "argocd" / "knnindex-health.lua"
BIN = Path(sys.executable).parent


class Pods:
    """Runs what the kubelet would: each serving Deployment's command as a real
    knn-serve on loopback, registered with Prometheus as a target."""

    def __init__(self, kubectl: Kubectl, ns: str, workdir: Path, prom: sv.Prometheus) -> None:
        self.kubectl, self.ns, self.workdir, self.prom = kubectl, ns, workdir, prom
        self.servers: dict[str, sv.KnnServe] = {}
        self._stack = contextlib.ExitStack()

    def run(self, deployment: str) -> sv.KnnServe:
        dep = ops.get(self.kubectl, "deployment", deployment, self.ns)
        assert dep is not None
        command: list[str] = dep["spec"]["template"]["spec"]["containers"][0]["command"]
        flags = dict(zip(command[1::2], command[2::2], strict=False))
        args = ["--ef-search", flags["--ef-search"], "--revision", flags["--revision"]]
        args += ["--probe-interval", flags["--probe-interval"]]
        server = self._stack.enter_context(
            sv.KnnServe.serve(
                flags["--artifact"],
                self.workdir / deployment,
                index_name=NAME,
                namespace=self.ns,
                args=args,
            )
        )
        self.servers[deployment] = server
        self.prom.set_targets([s.address for s in self.servers.values()])
        ops.make_available(self.kubectl, self.ns, deployment)
        return server

    def close(self) -> None:
        self._stack.close()


def run_builder_job(kubectl: Kubectl, ns: str, job_name: str, workdir: Path) -> BuildSummary:
    """The Job's own `knn-build` command, summary written where the test reads it."""
    job = ops.get(kubectl, "job", job_name, ns)
    assert job is not None
    command = list(job["spec"]["template"]["spec"]["containers"][0]["command"])
    summary_file = workdir / f"{job_name}.summary.json"
    command[command.index("--summary-file") + 1] = str(summary_file)
    command[0] = str(BIN / command[0])
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"{shlex.join(command)}\n{done.stderr[-3000:]}"
    return BuildSummary.model_validate_json(summary_file.read_text())


@dataclass
class Story:
    """An index built by the real builder and serving at STABLE_EF, watched by a real
    Prometheus."""

    kubectl: Kubectl
    ns: str
    operator: ops.OperatorProcess
    pods: Pods
    built: BuildSummary
    spec: dict[str, Any]

    def status(self) -> dict[str, Any]:
        return ops.status_of(self.kubectl, self.ns, NAME)

    def wait(self, what: str, check: Callable[[dict[str, Any]], Any], timeout: float = 60) -> Any:
        """The status once `check(status)` holds."""
        return ops.wait_for(
            what,
            lambda: s if check(s := self.status()) else None,
            timeout=timeout,
            diagnostics=self.operator.log_tail,
        )

    def roll_out(self, ef: int, **analysis: Any) -> str:
        """Applies the spec at efSearch `ef` in canary steps judged by the story's
        Prometheus (failureLimit 0 unless given); returns the canary's Deployment."""
        settings = {
            "prometheus": {"address": self.pods.prom.url, "timeout": "1s"},
            "interval": "2s",
            "scrapeInterval": "1s",
            "failureLimit": 0,
            "inconclusiveLimit": 10,
            **analysis,
        }
        steps = [{"setWeight": 50}, {"pause": {"duration": "6s"}}]
        rollout = {"steps": steps, "analysis": settings}
        change = ops.merge(self.spec, {"hnsw": {"efSearch": ef}, "rollout": rollout})
        ops.apply(self.kubectl, self.ns, ops.knn_index(NAME, change))
        status = self.wait("a canary revision in status", lambda s: s.get("canaryRevision"))
        name = f"{NAME}-{status['canaryRevision']}"
        ops.wait_for(
            f"Deployment {name}", lambda: ops.get(self.kubectl, "deployment", name, self.ns)
        )
        return name

    def recorded(self, ef: int) -> float:
        value = recall_at(self.built.recall_curve(), ef)
        assert value is not None
        return value


@pytest.fixture
def story(
    kubectl: Kubectl, namespace: str, start_operator: ops.OperatorStarter, tmp_path: Path
) -> Iterator[Story]:
    source = tmp_path / "vectors.npy"
    np.save(source, clustered(N, DIM), allow_pickle=False)
    spec: dict[str, Any] = {
        "source": {"uri": f"file://{source}", "dimension": DIM},
        "storage": {"uri": f"file://{tmp_path / 'artifacts'}"},
        "metric": "cosine",
        "hnsw": {"m": 8, "efConstruction": 64, "efSearch": STABLE_EF},
        "build": {"validation": {"probeQueries": 500, "k": 10, "minRecall": GATE}},
        "serving": {"replicas": 1, "probeIntervalSeconds": 1},
    }
    prom = sv.Prometheus(tmp_path / "prometheus", [], discovered=True)
    prom.start()
    pods = Pods(kubectl, namespace, tmp_path / "pods", prom)
    try:
        operator = start_operator()
        ops.apply(kubectl, namespace, ops.knn_index(NAME, spec))
        version = ops.expected_version(spec)
        ops.wait_job(kubectl, namespace, NAME, version, operator)
        job_name = f"{NAME}-build-{version}"
        built = run_builder_job(kubectl, namespace, job_name, tmp_path)
        ops.complete_build(kubectl, namespace, job_name, built)
        pods.run(ops.wait_serving_deployment(kubectl, namespace, NAME, version, operator))
        ops.wait_phase(kubectl, namespace, NAME, "Serving", operator)
        yield Story(kubectl, namespace, operator, pods, built, spec)
    finally:
        pods.close()
        prom.stop()


def test_a_canary_under_the_recall_threshold_is_rolled_back_on_its_own(story: Story) -> None:
    low, stable = story.recorded(LOW_EF), story.recorded(STABLE_EF)
    assert GATE <= low < stable - 0.05, (low, stable)  # above the gate, visibly worse
    threshold = round((low + stable) / 2, 3)
    before = story.status()
    canary = story.roll_out(LOW_EF, thresholds={"minRecall": threshold})
    server = story.pods.run(canary)

    status = story.wait("the canary rolled back by the analysis", lambda s: s.get("rolledBack"))
    rolled = status["rolledBack"]
    assert rolled["cause"] == "AnalysisFailed", rolled
    assert "recall" in rolled["message"] and str(threshold) in rolled["message"], rolled
    assert status["phase"] == "RolledBack"
    assert status["stableRevision"] == before["stableRevision"]
    assert ops.condition({"status": status}, "Ready")["status"] == "True"  # type: ignore[index]
    dep = ops.get(story.kubectl, "deployment", canary, story.ns)
    assert dep is not None and dep["spec"]["replicas"] == 0, "the canary is scaled to zero"
    failed = [m for m in status["analysis"]["lastMeasurements"] if m["result"] == "Failed"]
    assert failed and failed[-1]["check"] == "recall"
    measured = float(failed[-1]["value"])
    # Independent truths: Prometheus itself, and brute force on queries nobody saw.
    [scraped] = story.pods.prom.values(f'knn_recall_ratio{{version="{rolled["revision"]}"}}')
    assert scraped < threshold and abs(scraped - measured) < 0.02
    truth = fresh_query_recall(server)
    print(
        f"\nrecorded recall ef{LOW_EF} {low:.4f} ef{STABLE_EF} {stable:.4f}; threshold "
        f"{threshold}; canary measured {measured:.4f}, scraped {scraped:.4f}, new queries "
        f"{truth:.4f}"
    )
    assert abs(measured - truth) < 0.04, (measured, truth)
    assert ("Warning", "RolledBack") in ops.event_reasons(story.kubectl, story.ns, NAME)
    # What Argo CD would show for this object, read from the API server as it would.
    live = story.kubectl.json("-n", story.ns, "get", "knnindex", NAME)
    assert argocd.health(ARGOCD_HEALTH, live) == ("Degraded", f"rolled back: {rolled['message']}")


def fresh_query_recall(server: sv.KnnServe, queries: int = 300) -> float:
    """recall@10 of new queries from the same space, answered by `server` over HTTP,
    against a float64 brute force over the source."""
    data = clustered(N, DIM).astype(np.float64)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    q = clustered(queries, DIM, sample_seed=99).astype(np.float64)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    truth = np.argsort(-(q @ data.T), axis=1)[:, :10]
    found = 0
    with server.client() as c:
        for row, vector in enumerate(q):
            r = c.post("/v1/query", json={"vector": vector.tolist(), "k": 10})
            assert r.status_code == 200, r.text
            found += len(set(r.json()["ids"]) & set(truth[row].tolist()))
    return found / (10 * queries)


def test_a_good_canary_earns_its_traffic_and_is_promoted(story: Story) -> None:
    before = story.status()["stableRevision"]
    threshold = round(story.recorded(STABLE_EF) - 0.05, 3)
    canary = story.roll_out(HIGH_EF, thresholds={"minRecall": threshold})
    story.pods.run(canary)
    revision = canary.removeprefix(f"{NAME}-")
    status = story.wait("the canary promoted", lambda s: s.get("stableRevision") == revision)
    assert status["phase"] == "Serving" and status["servingEfSearch"] == HIGH_EF
    assert status["analysis"]["lastResult"] == "Successful"
    assert status.get("rolledBack") is None
    old = ops.get(story.kubectl, "deployment", f"{NAME}-{before}", story.ns)
    assert old is not None and old["spec"]["replicas"] == 0
    reasons = ops.event_reasons(story.kubectl, story.ns, NAME)
    assert {("Normal", "RolloutStarted"), ("Normal", "Promoted")} <= reasons


def test_prometheus_down_holds_the_canary_and_never_promotes_it(story: Story) -> None:
    threshold = round(story.recorded(STABLE_EF) - 0.05, 3)
    story.pods.prom.stop()
    canary = story.roll_out(
        HIGH_EF,
        consecutiveErrorLimit=1,
        onInconclusive="Pause",
        thresholds={"minRecall": threshold},
    )
    story.pods.run(canary)
    status = story.wait(
        "the rollout held by analysis errors",
        lambda s: (s.get("rollout") or {}).get("pausedReason"),
    )
    assert "consecutive" in status["rollout"]["pausedReason"], status["rollout"]
    ops.wait_reconciles(story.operator, 3)
    status = story.status()
    assert status["canaryRevision"] == canary.removeprefix(f"{NAME}-"), "still a canary"
    assert status["stableRevision"] != status["canaryRevision"]
    results = {m["result"] for m in status["analysis"]["lastMeasurements"]}
    assert results == {"Error"}, results


HUGE_EF = 4096  # the widest efSearch the CRD allows: every query walks much of the graph
LATENCY_LIMIT_MS = 1.0


class Load:
    """Queries to every serving pod at a steady pace, as the index's Service would
    spread them, on a thread; client-side latencies kept per server."""

    def __init__(self, servers: list[sv.KnnServe], rps: float = 40.0) -> None:
        self.servers, self.rps = servers, rps
        self.latencies: dict[str, list[float]] = {s.address: [] for s in servers}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rng = np.random.default_rng(5)
        clients = [s.client() for s in self.servers]
        try:
            for i in range(100_000):  # bounded: stops long before, at most ~40 minutes' worth
                if self._stop.wait(1.0 / self.rps):
                    return
                server, client = self.servers[i % len(self.servers)], clients[i % len(clients)]
                t0 = time.perf_counter()
                r = client.post("/v1/query", json={"vector": rng.normal(size=DIM).tolist()})
                if r.status_code == 200:
                    self.latencies[server.address].append(time.perf_counter() - t0)
        finally:
            for c in clients:
                c.close()

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def test_a_slow_canary_under_load_is_rolled_back_on_latency(story: Story) -> None:
    canary = story.roll_out(HUGE_EF, thresholds={"p95LatencyMs": LATENCY_LIMIT_MS})
    server = story.pods.run(canary)
    with Load(list(story.pods.servers.values())) as load:
        status = story.wait(
            "the canary rolled back on latency", lambda s: s.get("rolledBack"), timeout=90
        )
    rolled = status["rolledBack"]
    assert rolled["cause"] == "AnalysisFailed" and "latency" in rolled["message"], rolled
    failed = [m for m in status["analysis"]["lastMeasurements"] if m["result"] == "Failed"]
    assert failed and failed[-1]["check"] == "latency-p95"
    # Independent truth: the client's own timing of the canary's answers.
    seen = sorted(load.latencies[server.address])
    assert len(seen) >= 20, "the canary took live traffic"
    client_p95_ms = 1000 * seen[int(0.95 * (len(seen) - 1))]
    assert client_p95_ms > LATENCY_LIMIT_MS, client_p95_ms
    print(f"\ncanary p95: analysis {failed[-1]['value']:.2f} ms, client {client_p95_ms:.2f} ms")


def _count(kubectl: Kubectl, ns: str, reason: str, mentioning: str) -> int:
    return sum(
        e.get("count", 1)
        for e in ops.events(kubectl, ns, NAME)
        if e["reason"] == reason and mentioning in e["message"]
    )


def test_an_operator_killed_during_a_rollout_resumes_it_from_status(story: Story) -> None:
    kubectl, ns, operator = story.kubectl, story.ns, story.operator
    old = story.status()["stableRevision"]
    threshold = round(story.recorded(STABLE_EF) - 0.05, 3)
    canary = story.roll_out(HIGH_EF, thresholds={"minRecall": threshold})
    revision = canary.removeprefix(f"{NAME}-")
    # Killed before the canary's pod runs; it comes up while no operator runs.
    operator.kill()
    story.pods.run(canary)
    operator.start()
    story.wait("the pause step", lambda s: (s.get("rollout") or {}).get("step") == 1)
    # Killed during the pause; the pause ends while no operator runs.
    operator.kill()
    time.sleep(7)
    operator.start()
    status = story.wait(
        "the canary promoted after the restarts", lambda s: s.get("stableRevision") == revision
    )
    ops.wait_reconciles(operator, 2)
    assert status.get("rolledBack") is None and status.get("canaryRevision") is None
    deployments = {
        d["metadata"]["name"]: d["spec"]["replicas"]
        for d in ops.items(kubectl, "deployments", ns, f"knn.dev/index={NAME}")
    }
    assert deployments == {canary: 1, f"{NAME}-{old}": 0}, "no orphans, nothing twice"
    assert _count(kubectl, ns, "RolloutStarted", revision) == 1
    assert _count(kubectl, ns, "Promoted", revision) == 1


def test_credentials_the_operator_may_not_read_are_an_error_naming_the_chart_value(
    story: Story,
) -> None:
    """The chart's default RBAC has no Secrets: an analysis that names one gets Error
    measurements saying which value to set, never a pass and never a crash loop."""
    role = yaml.safe_load(ops.CLUSTER_ROLE_FILE.read_text())
    role["rules"] = rbac.BASE_RULES
    story.kubectl.apply_manifest(json.dumps(role), "--force-conflicts")
    try:
        auth = {"secretName": "prometheus-token", "bearerTokenKey": "token"}
        prometheus = {"address": story.pods.prom.url, "timeout": "1s", "auth": auth}
        canary = story.roll_out(
            HIGH_EF, prometheus=prometheus, consecutiveErrorLimit=50, thresholds={"minRecall": GATE}
        )
        story.pods.run(canary)

        def refused(s: dict[str, Any]) -> list[dict[str, Any]]:
            measured = (s.get("analysis") or {}).get("lastMeasurements") or []
            return [m for m in measured if m["result"] == "Error"]

        errors = refused(story.wait("an Error measurement", refused))
        assert "rbac.prometheusSecrets=true" in errors[-1]["message"], errors[-1]
        assert "forbidden" in errors[-1]["message"].lower()
        status = story.status()
        measured = status["analysis"]["lastMeasurements"]
        assert {m["result"] for m in measured} == {"Error"}, measured
        assert status["stableRevision"] != status.get("canaryRevision")
    finally:
        story.kubectl.run(
            "apply", "--server-side", "--force-conflicts", "-f", str(ops.CLUSTER_ROLE_FILE)
        )
