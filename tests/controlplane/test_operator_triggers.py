"""Retraining triggers on the real API server: the operator starts a rebuild when its
cron schedule fires, and when the real drift gauge of a real `knn-serve`, scraped by
a real Prometheus, stays above the threshold; an unshifted query stream does not.

As in test_operator_rollout.py there is no kubelet: the test runs the builder Job's
own `knn-build` command and the serving Deployment's own `knn-serve` command itself.
Needs the control-plane tools and Debian's `prometheus`; fails, never skips.
"""

from __future__ import annotations

import contextlib
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
                timeout: float = 60) -> dict[str, Any]:  # fmt: skip
    return ops.wait_for(
        what,
        lambda: s if check(s := ops.status_of(kubectl, ns, NAME)) else None,
        timeout=timeout,
        diagnostics=op.log_tail,
    )


def events(kubectl: Kubectl, ns: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in ops.events(kubectl, ns, NAME) if e["reason"] == reason]


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
    assert last["reason"] == "Drift" and last["value"] > THRESHOLD
    assert abs(last["value"] - scraped) < 0.05 * scraped
    held = seconds(status["drift"]["aboveSince"], last["at"])
    assert held >= HOLD_SECONDS, f"rebuilt after {held}s above the threshold"
    assert status["targetVersion"] == last["version"] != v1
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
