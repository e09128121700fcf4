"""Retraining triggers on the real API server: the operator starts a rebuild when its
cron schedule fires, and when the real drift gauge of a real `knn-serve`, scraped by
a real Prometheus, stays above the threshold; an unshifted query stream does not. The
same for a ClusterModel: a real `knn-build --kind kmeans`, its server's PSI gauge.

As in test_operator_rollout.py there is no kubelet: the test runs the builder Job's
own `knn-build` command and the serving Deployment's own `knn-serve` command itself.
Needs the control-plane tools and Debian's `prometheus`; fails, never skips.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pytest
from knn_devtools.kubectl import Kubectl
from knn_devtools.synthetic import clustered
from knn_operator.timeutil import parse_iso

if TYPE_CHECKING:
    from tests.controlplane import operator_support as ops
    from tests.controlplane import test_operator_rollout as rollout
    from tests.dataplane import servers as sv
else:
    import operator_support as ops
    import test_operator_rollout as rollout

    from tests.dataplane import servers as sv

pytestmark = [pytest.mark.controlplane, pytest.mark.prometheus]

N, DIM = 5_000, 32
NAME = rollout.NAME
EVERY_20S = "*/20 * * * * *"  # cronsim's leading seconds field: a fire every 20 s
THRESHOLD = 2.0  # live / probe nearest-neighbour distance
HOLD_SECONDS = 6


def base_spec(tmp_path: Path, rebuild: dict[str, Any]) -> dict[str, Any]:
    source = tmp_path / "vectors.npy"
    np.save(source, clustered(N, DIM), allow_pickle=False)
    return {
        "source": {"uri": f"file://{source}", "dimension": DIM},
        "storage": {"uri": f"file://{tmp_path / 'artifacts'}"},
        "metric": "l2",
        "hnsw": {"m": 8, "efConstruction": 64, "efSearch": 64},
        "build": {"validation": {"probeQueries": 300, "k": 10, "minRecall": 0.5}},
        "serving": {"replicas": 1, "probeIntervalSeconds": 1},
        "rebuild": rebuild,
    }


def build(kubectl: Kubectl, ns: str, version: str, tmp_path: Path, op: ops.OperatorProcess) -> str:
    """Runs the version's builder Job for real and completes it; returns its Deployment."""
    ops.wait_job(kubectl, ns, NAME, version, op)
    job = f"{NAME}-build-{version}"
    ops.complete_build(kubectl, ns, job, rollout.run_builder_job(kubectl, ns, job, tmp_path))
    return ops.wait_serving_deployment(kubectl, ns, NAME, version, op)


def wait_status(kubectl: Kubectl, ns: str, op: ops.OperatorProcess, what: str, check: Any,
                timeout: float = 60, *, resource: str = "knn",
                name: str = NAME) -> dict[str, Any]:  # fmt: skip
    return ops.wait_for(
        what,
        lambda: s if check(s := ops.status_of(kubectl, ns, name, resource)) else None,
        timeout=timeout,
        diagnostics=op.log_tail,
    )


def events(kubectl: Kubectl, ns: str, reason: str, *, kind: str = "KnnIndex",
           name: str = NAME) -> list[dict[str, Any]]:  # fmt: skip
    return [e for e in ops.events(kubectl, ns, name, kind) if e["reason"] == reason]


def assert_drift_rebuild(
    status: dict[str, Any], scraped: float, threshold: float, stable: str
) -> None:
    """The trigger the status records: a drift rebuild at the value Prometheus holds,
    after the whole hold above the threshold, building a new version beside the stable."""
    last = status["lastRebuild"]
    assert last["reason"] == "Drift" and last["value"] > threshold
    assert abs(last["value"] - scraped) < 0.05 * scraped
    held = seconds(status["drift"]["aboveSince"], last["at"])
    assert held >= HOLD_SECONDS, f"rebuilt after {held}s above the threshold"
    assert status["targetVersion"] == last["version"] != stable
    assert status["stableVersion"] == stable


def seconds(a: str, b: str) -> float:
    ta, tb = parse_iso(a), parse_iso(b)
    assert ta is not None and tb is not None
    return (tb - ta).total_seconds()


def test_the_schedule_starts_one_rebuild_per_due_fire(
    kubectl: Kubectl, namespace: str, start_operator: ops.OperatorStarter, tmp_path: Path
) -> None:
    spec = base_spec(tmp_path, {"schedule": EVERY_20S})
    # No resync within the test: only the plan's own wake-up can fire the schedule.
    op = start_operator(resync_seconds=600)
    ops.apply(kubectl, namespace, ops.knn_index(NAME, spec))
    v1 = ops.expected_version(spec)
    ops.make_available(kubectl, namespace, build(kubectl, namespace, v1, tmp_path, op))
    ops.wait_phase(kubectl, namespace, NAME, "Serving", op)

    status = wait_status(
        kubectl, namespace, op, "a scheduled rebuild", lambda s: s.get("lastRebuild")
    )
    last = status["lastRebuild"]
    assert last["reason"] == "Schedule" and last["version"] != v1, last
    lag = seconds(last["fire"], last["at"])
    print(f"\nfired at {last['fire']}, rebuild started {lag:.1f}s later")
    assert 0 <= lag <= 5, "the operator woke at the fire time, not at a resync"
    assert status["targetVersion"] == last["version"] and status["stableVersion"] == v1
    assert ops.get(kubectl, "job", f"{NAME}-build-{last['version']}", namespace) is not None
    [event] = events(kubectl, namespace, "ScheduledRebuild")
    assert last["version"] in event["message"] and EVERY_20S in event["message"]

    # Two more fires while the new version builds wait for it: nothing piles up.
    time.sleep(45)
    status = ops.status_of(kubectl, namespace, NAME)
    assert (
        status["lastRebuild"] == last and len(events(kubectl, namespace, "ScheduledRebuild")) == 1
    )

    # Built and promoted, the fires missed meanwhile make one rebuild, not one each.
    v2 = last["version"]
    ops.make_available(kubectl, namespace, build(kubectl, namespace, v2, tmp_path, op))
    status = wait_status(
        kubectl, namespace, op, "a rebuild after v2", lambda s: s["lastRebuild"]["version"] != v2
    )
    again = status["lastRebuild"]
    assert status["stableVersion"] == v2 and again["missed"] >= 2, status
    # Two more passes (each asked for by an annotation, since nothing else changes
    # without a kubelet) add no third rebuild.
    for poke in ("1", "2"):
        done = ops.reconcile_count(op)
        kubectl.run("-n", namespace, "annotate", "--overwrite", "knn", NAME, f"test/poke={poke}")
        ops.wait_for(
            "a pass after the annotation",
            lambda: ops.reconcile_count(op) > done,  # noqa: B023 (called before the loop moves on)
            diagnostics=op.log_tail,
        )
    assert len(events(kubectl, namespace, "ScheduledRebuild")) == 2
    counted = 'knn_operator_rebuild_triggers_total{kind="KnnIndex",reason="Schedule"} 2.0'
    assert counted in op.metrics().splitlines()
    print(f"second rebuild caught up {again['missed']} fire(s) as one: {again['message']}")


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[sv.Prometheus]:
    prom = sv.Prometheus(tmp_path / "prometheus", [], discovered=True)
    prom.start()
    try:
        yield prom
    finally:
        prom.stop()


def send(server: sv.KnnServe, queries: npt.NDArray[np.float32], batch: int = 500) -> None:
    with server.client() as c:
        for start in range(0, len(queries), batch):
            chunk = queries[start : start + batch].tolist()
            r = c.post("/v1/query", json={"vectors": chunk, "k": 10})
            assert r.status_code == 200, r.text


def test_drift_held_above_the_threshold_starts_a_rebuild_and_an_unshifted_stream_does_not(
    kubectl: Kubectl,
    namespace: str,
    start_operator: ops.OperatorStarter,
    tmp_path: Path,
    prometheus: sv.Prometheus,
) -> None:
    on_drift = {
        "threshold": THRESHOLD,
        "for": f"{HOLD_SECONDS}s",
        "minInterval": "0s",
        "interval": "2s",
        "prometheus": {"address": prometheus.url, "timeout": "1s"},
    }
    spec = base_spec(tmp_path, {"onDrift": on_drift})
    op = start_operator()
    ops.apply(kubectl, namespace, ops.knn_index(NAME, spec))
    v1 = ops.expected_version(spec)
    with contextlib.closing(
        rollout.Pods(kubectl, namespace, tmp_path / "pods", prometheus)
    ) as pods:
        server = pods.run(build(kubectl, namespace, v1, tmp_path, op))
        ops.wait_phase(kubectl, namespace, NAME, "Serving", op)
        revision = ops.status_of(kubectl, namespace, NAME)["stableRevision"]
        gauge = f'knn_query_distance_ratio{{index="{NAME}",version="{revision}"}}'

        # Queries like the indexed data: the ratio stays near 1, nothing is rebuilt.
        send(server, clustered(3_000, DIM, sample_seed=99))
        prometheus.wait_for(gauge, lambda r: bool(r))
        calm = wait_status(
            kubectl, namespace, op, "a drift measured below the threshold",
            lambda s: (s.get("drift") or {}).get("result") == "Below",
        )  # fmt: skip
        time.sleep(HOLD_SECONDS + 6)
        status = ops.status_of(kubectl, namespace, NAME)
        assert status.get("lastRebuild") is None and status["drift"]["result"] == "Below", status
        assert seconds(calm["drift"]["at"], status["drift"]["at"]) >= 2, "measured again"
        assert not events(kubectl, namespace, "DriftRebuild")

        # Queries that moved away from the data (the whole 10,000-query window).
        send(server, clustered(10_000, DIM, sample_seed=98) + np.float32(1.0))
        status = wait_status(
            kubectl, namespace, op, "a drift rebuild", lambda s: s.get("lastRebuild"), timeout=90
        )
        [scraped] = prometheus.values(gauge)  # while the server runs (then the series goes stale)
    last = status["lastRebuild"]
    print(
        f"\nunshifted ratio {calm['drift']['value']:.3f}; shifted: operator measured "
        f"{last['value']:.3f}, Prometheus {scraped:.3f}; threshold {THRESHOLD}"
    )
    assert calm["drift"]["value"] < 1.3
    assert_drift_rebuild(status, scraped, THRESHOLD, v1)
    assert ops.get(kubectl, "job", f"{NAME}-build-{last['version']}", namespace) is not None
    [detected] = events(kubectl, namespace, "DriftDetected")
    assert detected["type"] == "Warning"
    [rebuilt] = events(kubectl, namespace, "DriftRebuild")
    assert f"{last['value']:.4g}" in rebuilt["message"] and last["version"] in rebuilt["message"]


def test_a_schedule_the_api_server_lets_through_but_cron_cannot_fire_is_refused(
    kubectl: Kubectl, namespace: str, start_operator: ops.OperatorStarter, tmp_path: Path
) -> None:
    """February 30th passes the CRD's pattern (each field is in range); cronsim
    refuses it, and the operator says so instead of never firing."""
    op = start_operator()
    ops.apply(
        kubectl, namespace, ops.knn_index(NAME, base_spec(tmp_path, {"schedule": "0 0 30 2 *"}))
    )
    status = ops.wait_phase(kubectl, namespace, NAME, "Failed", op)
    assert status["message"].startswith("spec.rebuild.schedule:"), status
    assert "'0 0 30 2 *' is not a valid cron expression: Bad day-of-month" in status["message"]
    # One per pass that reads the spec (the reconciler's refusal, as for any spec it
    # cannot read), so more than one by the time it is looked at.
    refused = events(kubectl, namespace, "InvalidSpec")
    assert refused and all(
        e["type"] == "Warning" and "Bad day-of-month" in e["message"] for e in refused
    )
    assert not ops.items(kubectl, "jobs", namespace), "nothing was built"


# -- a ClusterModel: the same triggers on the model's own drift gauge (PSI) -------------

MODEL = "segments"
MODEL_DIM, BLOBS = 16, 4
PSI_THRESHOLD = 0.25  # the usual "significant shift" line (serving/knn_serving/drift.py)


def blobs(n: int, seed: int, only: int | None = None) -> npt.NDArray[np.float32]:
    """Points of BLOBS well-separated Gaussian clusters (the same centres for every
    seed); `only` draws every point from one of them, a stream that has moved."""
    centres = np.random.default_rng(3).normal(scale=10.0, size=(BLOBS, MODEL_DIM))
    rng = np.random.default_rng(seed)
    which = np.full(n, only) if only is not None else rng.integers(0, BLOBS, size=n)
    return (centres[which] + rng.normal(size=(n, MODEL_DIM))).astype(np.float32)


def model_spec(tmp_path: Path, rebuild: dict[str, Any]) -> dict[str, Any]:
    source = tmp_path / "points.npy"
    np.save(source, blobs(4_000, seed=1), allow_pickle=False)
    return {
        "source": {"uri": f"file://{source}", "dimension": MODEL_DIM},
        "storage": {"uri": f"file://{tmp_path / 'artifacts'}"},
        "kmeans": {"clusters": BLOBS},
        "build": {"validation": {"probePoints": 200}},
        "serving": {"replicas": 1, "probeIntervalSeconds": 1},
        "rebuild": rebuild,
    }


# The model's status and Events, read as the index's are.
model_status = functools.partial(ops.status_of, name=MODEL, resource="clm")
wait_model = functools.partial(wait_status, resource="clm", name=MODEL)
model_events = functools.partial(events, kind="ClusterModel", name=MODEL)


def apply_model(kubectl: Kubectl, ns: str, spec: dict[str, Any]) -> None:
    obj = {"apiVersion": "knn.dev/v1alpha1", "kind": "ClusterModel",
           "metadata": {"name": MODEL}, "spec": spec}  # fmt: skip
    ops.apply(kubectl, ns, obj)


def train(kubectl: Kubectl, ns: str, op: ops.OperatorProcess, tmp_path: Path) -> str:
    """Runs the model's pending training Job for real (`knn-build --kind kmeans`) and
    completes it; returns the version it trained."""
    version = wait_model(kubectl, ns, op, "a training Job", lambda s: s.get("targetVersion"))[
        "targetVersion"
    ]
    job = f"{MODEL}-build-{version}"
    ops.wait_for(f"Job {job}", lambda: ops.get(kubectl, "job", job, ns), diagnostics=op.log_tail)
    built = rollout.run_builder_job(kubectl, ns, job, tmp_path)
    assert built.kind == "kmeans" and built.clusters == BLOBS, built
    ops.complete_build(kubectl, ns, job, built)
    return str(version)


def serve_model(
    kubectl: Kubectl, ns: str, op: ops.OperatorProcess, version: str, workdir: Path,
    prometheus: sv.Prometheus,
) -> contextlib.AbstractContextManager[sv.ModelServe]:  # fmt: skip
    """The serving Deployment's own knn-serve command, as the kubelet would run it,
    scraped by `prometheus`."""
    selector = f"knn.dev/model={MODEL},knn.dev/version={version},knn.dev/component=serving"
    [dep] = ops.wait_for(
        f"the serving Deployment of {version}",
        lambda: ops.items(kubectl, "deployments", ns, selector) or None,
        diagnostics=op.log_tail,
    )
    command: list[str] = dep["spec"]["template"]["spec"]["containers"][0]["command"]
    flags = dict(zip(command[1::2], command[2::2], strict=False))
    assert flags["--model-name"] == MODEL
    args = ["--model-name", MODEL, "--revision", flags["--revision"]]
    args += ["--probe-interval", flags["--probe-interval"]]

    @contextlib.contextmanager
    def running() -> Iterator[sv.ModelServe]:
        with sv.ModelServe.serve(flags["--artifact"], workdir, namespace=ns, args=args) as s:
            prometheus.set_targets([s.address])
            ops.make_available(kubectl, ns, dep["metadata"]["name"])
            yield s

    return running()


def assign(server: sv.ModelServe, points: npt.NDArray[np.float32], batch: int = 500) -> None:
    with server.client() as c:
        for start in range(0, len(points), batch):
            r = c.post("/v1/assign", json={"vectors": points[start : start + batch].tolist()})
            assert r.status_code == 200, r.text


def test_a_cluster_model_retrains_when_its_live_assignments_drift(
    kubectl: Kubectl,
    namespace: str,
    start_operator: ops.OperatorStarter,
    tmp_path: Path,
    prometheus: sv.Prometheus,
) -> None:
    """The model's default drift query (max of knn_cluster_drift_psi of its stable
    revision) on a real Prometheus scraping the real server: assignments drawn like
    the training data keep the PSI low; a stream from one cluster only retrains."""
    on_drift = {
        "threshold": PSI_THRESHOLD,
        "for": f"{HOLD_SECONDS}s",
        "minInterval": "0s",
        "interval": "2s",
        "prometheus": {"address": prometheus.url, "timeout": "1s"},
    }
    op = start_operator()
    apply_model(kubectl, namespace, model_spec(tmp_path, {"onDrift": on_drift}))
    v1 = train(kubectl, namespace, op, tmp_path)
    with serve_model(kubectl, namespace, op, v1, tmp_path / "pod", prometheus) as server:
        serving = wait_model(
            kubectl, namespace, op, "Serving", lambda s: s.get("phase") == "Serving"
        )
        gauge = f'knn_cluster_drift_psi{{model="{MODEL}",version="{serving["stableRevision"]}"}}'

        assign(server, blobs(10_000, seed=2))  # like the training data
        prometheus.wait_for(gauge, lambda r: bool(r))
        calm = wait_model(
            kubectl, namespace, op, "a drift measured below the threshold",
            lambda s: (s.get("drift") or {}).get("result") == "Below",
        )  # fmt: skip
        time.sleep(HOLD_SECONDS + 4)
        status = model_status(kubectl, namespace)
        assert status.get("lastRebuild") is None and status["drift"]["result"] == "Below", status
        assert not model_events(kubectl, namespace, "DriftRebuild")

        assign(server, blobs(10_000, seed=3, only=0))  # the whole window from one cluster
        status = wait_model(
            kubectl, namespace, op, "a drift retrain", lambda s: s.get("lastRebuild"), timeout=90
        )
        [scraped] = prometheus.values(gauge)
    last = status["lastRebuild"]
    print(
        f"\nunshifted PSI {calm['drift']['value']:.4f}; one-cluster stream: operator measured "
        f"{last['value']:.3f}, Prometheus {scraped:.3f}; threshold {PSI_THRESHOLD}"
    )
    assert calm["drift"]["value"] < 0.05
    assert_drift_rebuild(status, scraped, PSI_THRESHOLD, v1)
    job = ops.get(kubectl, "job", f"{MODEL}-build-{last['version']}", namespace)
    assert job is not None
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:3] == ["knn-build", "--kind", "kmeans"], command
    [rebuilt] = model_events(kubectl, namespace, "DriftRebuild")
    assert f"{last['value']:.4g}" in rebuilt["message"] and last["version"] in rebuilt["message"]
    counted = 'knn_operator_rebuild_triggers_total{kind="ClusterModel",reason="Drift"} 1.0'
    assert counted in op.metrics().splitlines()


def test_a_cluster_models_schedule_retrains_it(
    kubectl: Kubectl, namespace: str, start_operator: ops.OperatorStarter, tmp_path: Path
) -> None:
    op = start_operator(resync_seconds=600)
    apply_model(kubectl, namespace, model_spec(tmp_path, {"schedule": EVERY_20S}))
    v1 = train(kubectl, namespace, op, tmp_path)
    selector = f"knn.dev/model={MODEL},knn.dev/version={v1},knn.dev/component=serving"
    [dep] = ops.wait_for(
        "the serving Deployment",
        lambda: ops.items(kubectl, "deployments", namespace, selector) or None,
        diagnostics=op.log_tail,
    )
    ops.make_available(kubectl, namespace, dep["metadata"]["name"])
    status = wait_model(
        kubectl, namespace, op, "a scheduled retrain", lambda s: s.get("lastRebuild")
    )
    last = status["lastRebuild"]
    assert last["reason"] == "Schedule" and last["version"] != v1, last
    assert 0 <= seconds(last["fire"], last["at"]) <= 5, "woke at the fire, not at a resync"
    assert status["stableVersion"] == v1 and status["targetVersion"] == last["version"]
    # The retrain is a real training run of the same inputs, as a new version.
    assert train(kubectl, namespace, op, tmp_path) == last["version"]
    [event] = model_events(kubectl, namespace, "ScheduledRebuild")
    assert last["version"] in event["message"]
