"""The planner's decisions, step by step, on observed states built by hand.

Pure tier: no API server. The observations here are what observe.py makes of
real Job/Deployment bodies; tests/integration drives the same path for real.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

import pytest
from knn_contracts import api
from knn_contracts.artifact import BuildSummary
from knn_operator.builders.common import Owner
from knn_operator.models.common import DisruptionBudget
from knn_operator.models.knnindex import KnnIndexSpec, KnnIndexStatus, WorkloadStatus
from knn_operator.observe import DeploymentState, JobState
from knn_operator.planning import Observed, Plan, plan
from knn_operator.planning.budgets import budgets_stage
from knn_operator.planning.serving import revision_for
from knn_operator.rollout.machine import AnalysisVerdict
from knn_operator.settings import Settings
from knn_operator.versioning import version_of

OWNER = Owner("products", "shop", "uid-1")
SETTINGS = Settings()
NOW = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)


def spec(**overrides: Any) -> KnnIndexSpec:
    doc: dict[str, Any] = {
        "source": {"uri": "s3://b/emb.npy", "dimension": 8},
        "storage": {"uri": "s3://artifacts/products"},
    }
    doc.update(overrides)
    return KnnIndexSpec.model_validate(doc)


def ix(status: WorkloadStatus) -> KnnIndexStatus:
    """An index's status, with its own fields (recall, servingEfSearch)."""
    assert isinstance(status, KnnIndexStatus)
    return status


def observed(
    s: KnnIndexSpec,
    status: WorkloadStatus | None = None,
    jobs: dict[str, JobState] | None = None,
    deps: dict[str, DeploymentState] | None = None,
    generation: int = 1,
    annotations: dict[str, str] | None = None,
    gc_jobs: dict[str, JobState] | None = None,
) -> Observed:
    """`deps` may be keyed by version: a version's Deployment is then the revision
    status records for it (the stable's), or the one the spec asks for."""
    st = status or KnnIndexStatus()
    by_revision = {}
    for key, d in (deps or {}).items():
        rev = key if "-" in key else revision(s, key, st)
        by_revision[rev] = replace(d, name=f"products-{rev}", version=key)
    return Observed(
        OWNER,
        generation,
        s,
        st,
        jobs or {},
        by_revision,
        gc_jobs=gc_jobs or {},
        annotations=annotations or {},
    )


def revision(s: KnnIndexSpec, version: str, status: WorkloadStatus | None = None) -> str:
    recorded = [r.revision for r in (status.revisions if status else []) if r.version == version]
    return recorded[-1] if recorded else revision_for(s, SETTINGS, version, NOW).revision


def dep_name(s: KnnIndexSpec, version: str, status: WorkloadStatus | None = None) -> str:
    return f"products-{revision(s, version, status)}"


def done_job(version: str, ok: bool = True, message: str = "") -> JobState:
    summary = BuildSummary(
        outcome="Succeeded" if ok else "Failed",
        version=version,
        vectors=100,
        recall=0.97,
        build_seconds=1.5,
        artifact=f"s3://artifacts/products/{version}",
        sha256="ab" * 32,
        message=message,
    )
    return JobState(
        f"products-build-{version}",
        version,
        True,
        ok,
        "Complete" if ok else "BackoffLimitExceeded",
        summary,
        message,
    )


def dep(version: str, available: int, replicas: int = 2) -> DeploymentState:
    return DeploymentState(f"products-{version}", version, replicas, available, replicas, True)


def kinds(p: Plan) -> list[tuple[str, str]]:
    return [(o["kind"], o["metadata"]["name"]) for o in p.apply]


def cond(p: Plan, type_: str) -> str:
    return next(c.status for c in p.status.conditions if c.type == type_)


def test_new_index_starts_a_build_job() -> None:
    s = spec()
    v = version_of(s)
    p = plan(observed(s), SETTINGS, NOW)
    assert kinds(p) == [("Job", f"products-build-{v}")]
    assert p.status.phase == "Building"
    assert p.status.builds[0].outcome == "Building"
    assert cond(p, "Built") == "Unknown" and cond(p, "Ready") == "False"
    assert [e.reason for e in p.events] == ["BuildStarted"]  # the phase is not announced twice
    job = p.apply[0]
    assert job["metadata"]["labels"][api.LABEL_VERSION] == v
    assert job["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert job["spec"]["backoffLimit"] == 2 and job["spec"]["activeDeadlineSeconds"] == 3600
    assert "--min-recall" in container["command"]


def test_build_success_creates_serving_and_records_summary() -> None:
    s = spec()
    v = version_of(s)
    first = plan(observed(s), SETTINGS, NOW)
    p = plan(observed(s, first.status, {v: done_job(v)}), SETTINGS, NOW)
    assert ("Deployment", dep_name(s, v)) in kinds(p)
    assert ("Service", dep_name(s, v)) in kinds(p)
    assert p.status.stable_revision is None  # nothing stable until available
    assert p.status.canary_revision is None, "the first revision is not a canary"
    assert p.status.target_revision == revision(s, v)
    rec = p.status.builds[-1]
    assert rec.outcome == "Succeeded" and rec.recall == 0.97 and rec.vectors == 100
    assert p.status.phase == "Progressing"
    assert "BuildSucceeded" in [e.reason for e in p.events]


def test_available_deployment_becomes_stable_and_ready() -> None:
    s = spec()
    v = version_of(s)
    st = plan(observed(s, None, {v: done_job(v)}), SETTINGS, NOW).status
    st = plan(observed(s, st, {v: done_job(v)}), SETTINGS, NOW).status
    p = plan(observed(s, st, {v: done_job(v)}, {v: dep(v, 2)}), SETTINGS, NOW)
    assert p.status.phase == "Serving" and p.status.stable_version == v
    assert p.status.stable_revision == revision(s, v) and p.status.canary_revision is None
    assert cond(p, "Ready") == "True" and cond(p, "Progressing") == "False"
    index = next(o for o in p.apply if o["metadata"]["name"] == "products")
    # The replica router: one Service selects every serving revision of the index.
    assert index["spec"]["selector"][api.LABEL_INDEX] == "products"
    assert api.LABEL_VERSION not in index["spec"]["selector"]
    assert ix(p.status).recall == 0.97


def test_failed_build_touches_nothing_that_serves() -> None:
    s = spec()
    v = version_of(s)
    serving = _serving(s)
    s2 = spec(metric="l2")
    v2 = version_of(s2)
    st = plan(observed(s2, serving, {v: done_job(v)}, {v: dep(v, 2)}), SETTINGS, NOW).status
    failed = done_job(v2, ok=False, message="recall@10 0.5 is below --min-recall 0.95")
    p = plan(observed(s2, st, {v: done_job(v), v2: failed}, {v: dep(v, 2)}), SETTINGS, NOW)
    # The stable keeps serving: a failed rebuild is not a Failed index.
    assert p.status.phase == "Serving"
    assert "below --min-recall" in (p.status.message or "")
    assert p.status.stable_version == v
    assert cond(p, "Ready") == "True" and cond(p, "Built") == "False"
    assert cond(p, "Progressing") == "False"
    progressing = next(c for c in p.status.conditions if c.type == "Progressing")
    assert progressing.reason == "BuildFailed"
    assert not [n for k, n in kinds(p) if k == "Deployment" and v2 in n]
    stable = next(o for o in p.apply if o["kind"] == "Deployment")
    assert stable["spec"]["replicas"] == 2 and v in stable["metadata"]["name"]
    assert any(e.type == "Warning" and e.reason == "BuildFailed" for e in p.events)
    # A failed version is not retried by itself.
    again = plan(
        observed(s2, p.status, {v: done_job(v), v2: failed}, {v: dep(v, 2)}), SETTINGS, NOW
    )
    assert ("Job", f"products-build-{v2}") not in kinds(again)
    assert not [e for e in again.events if e.reason == "BuildFailed"]


def _serving(s: KnnIndexSpec) -> WorkloadStatus:
    v = version_of(s)
    st = plan(observed(s, None, {v: done_job(v)}), SETTINGS, NOW).status
    return plan(observed(s, st, {v: done_job(v)}, {v: dep(v, 2)}), SETTINGS, NOW).status


def _second_version_built(limit: int) -> tuple[KnnIndexSpec, str, str, WorkloadStatus]:
    """v1 serving, v2 (another metric) built but not yet available."""
    s1 = spec(history={"limit": limit})
    v1 = version_of(s1)
    st = _serving(s1)
    s2 = spec(history={"limit": limit}, metric="l2")
    v2 = version_of(s2)
    jobs = {v1: done_job(v1), v2: done_job(v2)}
    st = plan(observed(s2, st, jobs, {v1: dep(v1, 2)}), SETTINGS, NOW).status
    return s2, v1, v2, st


@pytest.mark.parametrize(
    ("change", "rebuilds"),
    [
        ({"serving": {"replicas": 5}}, False),
        ({"hnsw": {"efSearch": 128}}, False),
        ({"serving": {"resources": {"requests": {"cpu": "2"}}}}, False),
        ({"metric": "ip"}, True),
        ({"hnsw": {"m": 32}}, True),
        ({"source": {"uri": "s3://b/other.npy", "dimension": 8}}, True),
        ({"rebuild": {"token": "again"}}, True),
    ],
)
def test_only_artifact_inputs_change_the_version(change: dict[str, Any], rebuilds: bool) -> None:
    assert (version_of(spec(**change)) != version_of(spec())) is rebuilds


def test_replicas_alone_scale_in_place() -> None:
    s = spec()
    v = version_of(s)
    st = _serving(s)
    s2 = spec(serving={"replicas": 5})
    p = plan(observed(s2, st, {v: done_job(v)}, {v: dep(v, 2)}, generation=2), SETTINGS, NOW)
    assert [n for k, n in kinds(p) if k == "Deployment"] == [dep_name(s, v)]
    d = next(o for o in p.apply if o["kind"] == "Deployment")
    assert d["spec"]["replicas"] == 5
    assert not any(o["kind"] == "Job" for o in p.apply)
    assert p.status.observed_generation == 2 and p.status.canary_revision is None


@pytest.mark.parametrize(
    "change",
    [
        {"hnsw": {"efSearch": 128}},
        {"serving": {"workers": 2}},
        {"serving": {"image": "registry.local/knn-serving:2"}},
        {"serving": {"resources": {"requests": {"cpu": "2"}}}},
        {"serving": {"pod": {"nodeSelector": {"pool": "search"}}}},
    ],
)
def test_a_serving_change_is_a_new_revision_of_the_same_version(change: dict[str, Any]) -> None:
    s = spec()
    v = version_of(s)
    st = _serving(s)
    s2 = spec(**change)
    assert version_of(s2) == v  # no rebuild
    p = plan(observed(s2, st, {v: done_job(v)}, {v: dep(v, 2)}, generation=2), SETTINGS, NOW)
    new = revision(s2, v)
    assert new != st.stable_revision and p.status.canary_revision == new
    assert p.status.stable_revision == st.stable_revision  # still serving, unchanged
    old = next(o for o in p.apply if o["metadata"]["name"] == f"products-{st.stable_revision}")
    cmd = old["spec"]["template"]["spec"]["containers"][0]["command"]
    assert cmd[cmd.index("--ef-search") + 1] == "64" and old["spec"]["replicas"] == 2
    assert not any(o["kind"] == "Job" for o in p.apply)


def test_new_version_replaces_stable_when_available_then_history_trims() -> None:
    s1 = spec(history={"limit": 1})
    v1 = version_of(s1)
    st = _serving(s1)
    s2 = spec(history={"limit": 1}, metric="l2")
    v2 = version_of(s2)
    jobs = {v1: done_job(v1), v2: done_job(v2)}
    st = plan(observed(s2, st, {v1: done_job(v1)}, {v1: dep(v1, 2)}), SETTINGS, NOW).status
    st = plan(observed(s2, st, jobs, {v1: dep(v1, 2)}), SETTINGS, NOW).status
    assert st.stable_version == v1 and st.phase == "Progressing"
    p = plan(observed(s2, st, jobs, {v1: dep(v1, 2), v2: dep(v2, 2)}), SETTINGS, NOW)
    assert p.status.stable_version == v2 and p.status.phase == "Serving"
    assert "Promoted" in [e.reason for e in p.events]
    # history.limit 1: the old version's Deployment, Service and Job go.
    assert ("Deployment", dep_name(s1, v1)) in p.delete
    assert ("Job", f"products-build-{v1}") in p.delete


def test_history_keeps_old_versions_scaled_to_zero() -> None:
    s1 = spec()
    v1 = version_of(s1)
    st = _serving(s1)
    s2 = spec(metric="l2")
    v2 = version_of(s2)
    jobs = {v1: done_job(v1), v2: done_job(v2)}
    st = plan(observed(s2, st, jobs, {v1: dep(v1, 2)}), SETTINGS, NOW).status
    p = plan(observed(s2, st, jobs, {v1: dep(v1, 2), v2: dep(v2, 2)}), SETTINGS, NOW)
    old = [o for o in p.apply if o["kind"] == "Deployment" and v1 in o["metadata"]["name"]]
    assert old and old[0]["spec"]["replicas"] == 0
    assert not p.delete


def test_plan_is_idempotent() -> None:
    s = spec()
    v = version_of(s)
    st = _serving(s)
    a = plan(observed(s, st, {v: done_job(v)}, {v: dep(v, 2)}), SETTINGS, NOW)
    later = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    b = plan(observed(s, a.status, {v: done_job(v)}, {v: dep(v, 2)}), SETTINGS, later)
    assert a.status == b.status  # transition times kept when nothing changed
    assert a.apply == b.apply and not b.events


def test_lost_replicas_degrade_a_serving_index() -> None:
    s = spec()
    v = version_of(s)
    st = _serving(s)
    p = plan(observed(s, st, {v: done_job(v)}, {v: dep(v, 0)}), SETTINGS, NOW)
    assert p.status.phase == "Degraded"
    assert cond(p, "Degraded") == "True" and cond(p, "Ready") == "False"
    assert any(e.type == "Warning" and e.reason == "Degraded" for e in p.events)


def test_completed_job_without_summary_fails_clearly() -> None:
    s = spec()
    v = version_of(s)
    st = plan(observed(s), SETTINGS, NOW).status
    job = JobState(f"products-build-{v}", v, True, True, "Complete", None, "")
    p = plan(observed(s, st, {v: job}), SETTINGS, NOW)
    assert p.status.phase == "Failed"
    assert "termination message" in (p.status.message or "")


def test_versions_beyond_history_have_their_artifacts_deleted_then_forgotten() -> None:
    s2, v1, v2, st = _second_version_built(1)
    jobs = {v1: done_job(v1), v2: done_job(v2)}
    p = plan(observed(s2, st, jobs, {v1: dep(v1, 2), v2: dep(v2, 2)}), SETTINGS, NOW)
    gc = [o for o in p.apply if o["metadata"]["name"] == f"products-gc-{v1}"]
    assert gc, "a clean-up Job deletes the old artifact"
    cmd = gc[0]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert cmd == ["knn-artifact", "delete", f"s3://artifacts/products/{v1}"]
    assert any(b.version == v1 for b in p.status.builds), "record kept until deletion succeeds"
    gc_done = JobState(f"products-gc-{v1}", v1, True, True, "Complete", None, "")
    obs = observed(s2, p.status, {v2: done_job(v2)}, {v2: dep(v2, 2)}, gc_jobs={v1: gc_done})
    q = plan(obs, SETTINGS, NOW)
    assert [b.version for b in q.status.builds] == [v2]
    assert "ArtifactDeleted" in [e.reason for e in q.events]
    assert not [o for o in q.apply if o["metadata"]["name"] == f"products-gc-{v1}"]


def test_failed_artifact_deletion_is_reported_once() -> None:
    s2, v1, v2, st = _second_version_built(1)
    jobs = {v1: done_job(v1), v2: done_job(v2)}
    st = plan(observed(s2, st, jobs, {v1: dep(v1, 2), v2: dep(v2, 2)}), SETTINGS, NOW).status
    failed = JobState(
        f"products-gc-{v1}", v1, True, False, "BackoffLimitExceeded", None, "permission denied"
    )
    obs = observed(s2, st, {v2: done_job(v2)}, {v2: dep(v2, 2)}, gc_jobs={v1: failed})
    p = plan(obs, SETTINGS, NOW)
    rec = next(b for b in p.status.builds if b.version == v1)
    assert "permission denied" in rec.message
    assert [e.reason for e in p.events] == ["ArtifactDeletionFailed"]
    obs2 = observed(s2, p.status, {v2: done_job(v2)}, {v2: dep(v2, 2)}, gc_jobs={v1: failed})
    assert not plan(obs2, SETTINGS, NOW).events


def test_failed_build_records_are_bounded() -> None:
    st: WorkloadStatus = KnnIndexStatus()
    for i in range(15):
        s = spec(rebuild={"token": str(i)})
        v = version_of(s)
        st = plan(observed(s, st), SETTINGS, NOW).status
        st = plan(observed(s, st, {v: done_job(v, ok=False, message="bad")}), SETTINGS, NOW).status
    assert len(st.builds) == 10


# --- efSearch against the recorded recall curve ------------------------------------------------

# Recall by efSearch as a build on held-out probes records it (the numbers).
CURVE = [(10, 0.61, 20.0), (16, 0.715, 25.0), (32, 0.863, 40.0), (64, 0.953, 70.0)]


def curved_job(version: str) -> JobState:
    job = done_job(version)
    assert job.summary is not None
    summary = job.summary.model_copy(update={"recall": 0.953, "ef_search": 64, "curve": CURVE})
    return JobState(job.name, version, True, True, "Complete", summary, "")


def deployment_ef(p: Plan, revision: str | None) -> str:
    d = next(o for o in p.apply if o["metadata"]["name"] == f"products-{revision}")
    args: list[str] = d["spec"]["template"]["spec"]["containers"][0]["command"]
    return args[args.index("--ef-search") + 1]


def serving_at(ef: int) -> tuple[KnnIndexSpec, str, WorkloadStatus]:
    """An index built with CURVE and serving at `ef` (accepted)."""
    s = spec(hnsw={"efSearch": ef})
    v = version_of(s)
    jobs = {v: curved_job(v)}
    st = plan(observed(s, None, jobs), SETTINGS, NOW).status
    st = plan(observed(s, st, jobs, {v: dep(v, 2)}), SETTINGS, NOW).status
    assert st.phase == "Serving" and ix(st).serving_ef_search == ef
    return s, v, st


def test_the_build_records_the_curve_and_the_job_leaves_ef_search_to_serving() -> None:
    s = spec(hnsw={"efSearch": 64})
    v = version_of(s)
    job = plan(observed(s), SETTINGS, NOW).apply[0]
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "--ef-search" not in command and "--probe-source" not in command
    p = plan(observed(s, None, {v: curved_job(v)}), SETTINGS, NOW)
    rec = p.status.builds[-1]
    assert [(c.ef_search, c.recall) for c in rec.recall_curve] == [(e, r) for e, r, _ in CURVE]
    assert rec.ef_search == 64
    assert version_of(spec(hnsw={"efSearch": 16})) == v, "efSearch is not in the build identity"
    probed = spec(build={"validation": {"probeSource": "s3://b/queries.npy"}})
    assert version_of(probed) != version_of(spec())
    command = plan(observed(probed), SETTINGS, NOW).apply[0]["spec"]["template"]["spec"][
        "containers"
    ][0]["command"]
    assert command[command.index("--probe-source") + 1] == "s3://b/queries.npy"


def test_a_first_version_at_a_refused_ef_search_is_not_served() -> None:
    s = spec(hnsw={"efSearch": 16})
    v = version_of(s)
    p = plan(observed(s, None, {v: curved_job(v)}), SETTINGS, NOW)
    assert not [k for k, _ in kinds(p) if k == "Deployment"]
    assert p.status.phase == "Failed" and p.status.stable_version is None
    assert cond(p, "ServingSpecAccepted") == "False" and cond(p, "Ready") == "False"
    accepted = next(c for c in p.status.conditions if c.type == "ServingSpecAccepted")
    assert accepted.reason == "EfSearchBelowMinRecall"
    expected = (
        f"efSearch 16 has a recorded recall of 0.7150 for version {v}, below "
        "build.validation.minRecall 0.95; efSearch 64 reaches 0.9530"
    )
    assert accepted.message == expected and p.status.message == expected
    assert [(e.type, e.message) for e in p.events if e.reason == "EfSearchRefused"] == [
        ("Warning", expected)
    ]
    again = plan(observed(s, p.status, {v: curved_job(v)}), SETTINGS, NOW)
    assert "EfSearchRefused" not in [e.reason for e in again.events], "one Event per refusal"
    # Raising efSearch needs no rebuild: same version, served at once.
    up = spec(hnsw={"efSearch": 64})
    p = plan(observed(up, again.status, {v: curved_job(v)}), SETTINGS, NOW)
    assert deployment_ef(p, revision(up, v)) == "64"
    assert cond(p, "ServingSpecAccepted") == "True" and p.status.phase == "Progressing"


def test_a_refused_ef_search_change_leaves_the_stable_version_serving_as_it_was() -> None:
    _, v, st = serving_at(64)
    low = spec(hnsw={"efSearch": 16})
    p = plan(observed(low, st, {v: curved_job(v)}, {v: dep(v, 2)}, generation=2), SETTINGS, NOW)
    assert deployment_ef(p, st.stable_revision) == "64", "the stable keeps its efSearch"
    assert p.status.canary_revision is None, "a refused revision gets no canary"
    assert p.status.phase == "Serving" and cond(p, "Ready") == "True"
    assert cond(p, "ServingSpecAccepted") == "False" and cond(p, "Progressing") == "False"
    assert ix(p.status).serving_ef_search == 64 and ix(p.status).recall == 0.953
    assert p.status.message is not None
    assert p.status.message.endswith(
        f"; revision {st.stable_revision} keeps serving at efSearch 64"
    )
    assert [e.reason for e in p.events] == ["EfSearchRefused"]
    # The refusal persists across reconciles (status only), without new Events.
    p2 = plan(observed(low, p.status, {v: curved_job(v)}, {v: dep(v, 2)}, 2), SETTINGS, NOW)
    assert deployment_ef(p2, st.stable_revision) == "64" and p2.events == []


def test_an_ef_search_between_measured_ones_gets_the_lower_ones_recall() -> None:
    _, v, st = serving_at(64)
    # 48 lies between 32 (0.863) and 64 (0.953): credited with 0.863, under minRecall 0.95.
    p = plan(
        observed(spec(hnsw={"efSearch": 48}), st, {v: curved_job(v)}, {v: dep(v, 2)}, 2),
        SETTINGS,
        NOW,
    )
    assert cond(p, "ServingSpecAccepted") == "False"
    assert "efSearch 48 has a recorded recall of 0.8630" in (p.status.message or "")
    ok = spec(hnsw={"efSearch": 100})
    p = plan(observed(ok, st, {v: curved_job(v)}, {v: dep(v, 2)}, 2), SETTINGS, NOW)
    assert cond(p, "ServingSpecAccepted") == "True"
    assert deployment_ef(p, p.status.canary_revision) == "100"
    # The stable serves at 64 until the canary at 100 is promoted.
    assert ix(p.status).serving_ef_search == 64 and ix(p.status).recall == 0.953


def test_records_without_a_curve_are_served_unchecked() -> None:
    s = spec(hnsw={"efSearch": 16})
    v = version_of(s)
    p = plan(observed(s, None, {v: done_job(v)}), SETTINGS, NOW)
    assert ("Deployment", dep_name(s, v)) in kinds(p)
    assert cond(p, "ServingSpecAccepted") == "True"
    assert next(c for c in p.status.conditions if c.type == "ServingSpecAccepted").reason == (
        "NoRecallCurve"
    )


# --- rollouts through the planner: revisions, the replica router, actions ----------------------

STEPPED = {"steps": [{"setWeight": 20}, {"pause": {"duration": "60s"}}, {"setWeight": 50}]}


def replicas_of(p: Plan) -> dict[str, int]:
    return {
        o["metadata"]["name"].removeprefix("products-"): o["spec"]["replicas"]
        for o in p.apply
        if o["kind"] == "Deployment"
    }


def test_a_canary_earns_traffic_by_replica_ratio_step_by_step_then_is_promoted() -> None:
    _, v, st = serving_at(64)
    s2 = spec(hnsw={"efSearch": 96}, rollout=STEPPED)
    old, new = st.stable_revision, revision(s2, v)
    assert old is not None
    jobs = {v: curved_job(v)}

    def step(st: WorkloadStatus, canary: int, at: float = 0) -> Plan:
        deps = (
            {old: dep(old, 2), new: dep(new, canary, replicas=canary)}
            if canary
            else {old: dep(old, 2)}
        )
        when = NOW + dt.timedelta(seconds=at)
        return plan(observed(s2, st, jobs, deps), SETTINGS, when)

    p = step(st, 0)
    assert replicas_of(p) == {old: 2, new: 1}  # weight 20 of 2 replicas: 1 canary (33%)
    assert p.status.phase == "Progressing" and p.status.current_step == 0
    assert cond(p, "Progressing") == "True"
    p = step(p.status, 1, at=1)  # the canary is up: 1 of 3 pods
    assert p.status.canary_weight == 33 and p.status.current_step == 1
    assert p.requeue_after == 60.0  # the pause
    p = step(p.status, 1, at=61)
    assert replicas_of(p) == {old: 2, new: 2} and p.status.current_step == 2
    p = step(p.status, 2, at=62)
    assert p.status.stable_revision == new and p.status.canary_revision is None
    assert ix(p.status).serving_ef_search == 96 and p.status.phase == "Serving"
    assert replicas_of(p) == {old: 0, new: 2}  # the replica router cannot keep it warm
    states = {r.revision: r.state for r in p.status.revisions}
    assert states == {new: "Stable", old: "Retired"}
    assert "Promoted" in [e.reason for e in p.events]


def _mid_rollout() -> tuple[KnnIndexSpec, str, str, str, WorkloadStatus]:
    _, v, st = serving_at(64)
    s2 = spec(hnsw={"efSearch": 96}, rollout=STEPPED)
    old, new = st.stable_revision, revision(s2, v)
    assert old is not None
    p = plan(observed(s2, st, {v: curved_job(v)}, {old: dep(old, 2)}), SETTINGS, NOW)
    return s2, v, old, new, p.status


def test_the_abort_annotation_rolls_back_once_and_retry_starts_again() -> None:
    s2, v, old, new, st = _mid_rollout()
    jobs, deps = {v: curved_job(v)}, {old: dep(old, 2), new: dep(new, 1, replicas=1)}
    p = plan(observed(s2, st, jobs, deps, annotations={api.ANNOTATION_ABORT: "1"}), SETTINGS, NOW)
    assert replicas_of(p) == {old: 2, new: 0}  # one write: the canary to zero
    assert p.status.phase == "RolledBack" and p.status.rolled_back is not None
    assert p.status.rolled_back.cause == "AbortedByUser"
    assert p.status.handled_actions.abort == "1" and cond(p, "Ready") == "True"
    assert {r.revision: r.state for r in p.status.revisions}[new] == "RolledBack"
    # The same annotation value is not acted on again; the rollback holds.
    again = plan(
        observed(s2, p.status, jobs, deps, annotations={api.ANNOTATION_ABORT: "1"}), SETTINGS, NOW
    )
    assert again.status.phase == "RolledBack" and not again.events
    retry = {api.ANNOTATION_ABORT: "1", api.ANNOTATION_RETRY: "a"}
    r = plan(observed(s2, again.status, jobs, deps, annotations=retry), SETTINGS, NOW)
    assert r.status.canary_revision == new and r.status.rolled_back is None
    assert r.status.phase == "Progressing" and r.status.handled_actions.retry == "a"


def test_a_spec_change_mid_rollout_supersedes_the_canary_and_scales_it_down() -> None:
    _, v, old, new, st = _mid_rollout()
    s3 = spec(hnsw={"efSearch": 128}, rollout=STEPPED)
    newer = revision(s3, v)
    deps = {old: dep(old, 2), new: dep(new, 1, replicas=1)}
    p = plan(observed(s3, st, {v: curved_job(v)}, deps), SETTINGS, NOW)
    assert replicas_of(p) == {old: 2, new: 0, newer: 1}
    assert p.status.canary_revision == newer and p.status.current_step == 0
    assert {r.revision: r.state for r in p.status.revisions}[new] == "Superseded"


def test_a_stable_from_before_revisions_keeps_its_deployment_and_selector() -> None:
    s = spec()
    v = version_of(s)
    legacy = KnnIndexStatus(
        phase="Serving", stable_version=v, serving_ef_search=64, builds=_serving(s).builds
    )
    obs = Observed(OWNER, 1, s, legacy, {v: done_job(v)}, {v: dep(v, 2)})  # keyed by version
    p = plan(obs, SETTINGS, NOW)
    assert p.status.stable_revision == v and p.status.phase == "Progressing"
    d = next(o for o in p.apply if o["metadata"]["name"] == f"products-{v}")
    assert api.LABEL_REVISION not in d["spec"]["selector"]["matchLabels"]  # immutable
    assert d["spec"]["replicas"] == 2
    assert p.status.canary_revision == revision(s, v)  # moves on through a rollout


def test_a_route_that_cannot_be_read_holds_the_rollout_with_a_warning() -> None:
    _, v, st = serving_at(64)
    s2 = spec(hnsw={"efSearch": 96}, rollout={"trafficRouter": {"gatewayAPI": {"httpRoute": "r"}}})
    old = st.stable_revision
    assert old is not None
    p = plan(observed(s2, st, {v: curved_job(v)}, {old: dep(old, 2)}), SETTINGS, NOW)
    assert p.status.canary_revision is None and p.status.stable_revision == old
    assert "the canary waits for its route" in (p.status.message or "")
    assert [e.reason for e in p.events] == ["TrafficRouterUnavailable", "RouteNotFound"]
    again = plan(observed(s2, p.status, {v: curved_job(v)}, {old: dep(old, 2)}), SETTINGS, NOW)
    assert not again.events


def test_an_analysis_breach_rolls_back_and_times_the_return_to_stable() -> None:
    s2, v, old, new, st = _mid_rollout()
    jobs, deps = {v: curved_job(v)}, {old: dep(old, 2), new: dep(new, 1, replicas=1)}
    breach = AnalysisVerdict(
        "Abort", "recall 0.81 < 0.9 (failureLimit 0)", counted=True, cause="AnalysisFailed"
    )
    obs = replace(observed(s2, st, jobs, deps), analysis=breach)
    p = plan(obs, SETTINGS, NOW)
    assert p.outcomes == ["RolledBack"] and p.breach_to_stable is None  # pods still up
    assert p.status.rolled_back is not None and p.status.rolled_back.cause == "AnalysisFailed"
    assert replicas_of(p)[new] == 0
    later = NOW + dt.timedelta(seconds=7)
    gone = {old: dep(old, 2), new: dep(new, 0, replicas=0)}
    q = plan(observed(s2, p.status, jobs, gone), SETTINGS, later)
    assert q.breach_to_stable == 7.0 and not q.outcomes
    assert q.status.rolled_back is not None
    assert q.status.rolled_back.traffic_restored_at == "2026-11-22T00:00:07Z"
    again = plan(observed(s2, q.status, jobs, gone), SETTINGS, later)
    assert again.breach_to_stable is None, "observed once"


# --- autoscaling: the stable's replica count belongs to the autoscaler ------------------------

AUTO = {"replicas": 2, "autoscaling": {"minReplicas": 2, "maxReplicas": 8}}


def deployment(p: Plan, revision: str | None) -> dict[str, Any]:
    return next(o for o in p.apply if o["metadata"]["name"] == f"products-{revision}")


def test_the_stable_replica_count_is_handed_to_the_autoscaler_and_never_taken_back() -> None:
    s = spec(serving=AUTO)
    v = version_of(s)
    built = plan(observed(s, None, {v: done_job(v)}), SETTINGS, NOW).status
    first = plan(observed(s, built, {v: done_job(v)}, {v: dep(v, 2)}), SETTINGS, NOW)
    stable = first.status.stable_revision
    hpa = next(o for o in first.apply if o["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == f"products-{stable}"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 8)
    assert [h["spec"] for h in first.handover] == [{"replicas": 2}]  # a second owner first
    # The autoscaler chose 5: the operator's applies leave the count out from now on.
    scaled = {v: dep(v, 5, replicas=5)}
    later = plan(observed(s, first.status, {v: done_job(v)}, scaled), SETTINGS, NOW)
    assert "replicas" not in deployment(later, stable)["spec"] and not later.handover


def test_a_canary_is_sized_from_what_the_autoscaler_chose() -> None:
    s = spec(serving=AUTO)
    v = version_of(s)
    st = _serving(s)
    old, jobs = st.stable_revision, {v: done_job(v)}
    assert old is not None
    s2 = spec(serving=AUTO, hnsw={"efSearch": 96}, rollout=STEPPED)
    new = revision(s2, v)
    p = plan(observed(s2, st, jobs, {old: dep(old, 6, replicas=6)}), SETTINGS, NOW)
    assert "replicas" not in deployment(p, old)["spec"]
    assert deployment(p, new)["spec"]["replicas"] == 2  # weight 20 of 6: 6 * 20/80 = 1.5 → 2
    # Without steps the canary runs at the autoscaler's count and, once promoted,
    # starts from it too, handed over at once; the autoscaler follows it.
    s3 = spec(serving=AUTO, hnsw={"efSearch": 96})
    new = revision(s3, v)
    deps = {old: dep(old, 6, replicas=6), new: dep(new, 6, replicas=6)}
    promoted = plan(observed(s3, st, jobs, deps), SETTINGS, NOW)
    assert promoted.status.stable_revision == new
    assert deployment(promoted, old)["spec"]["replicas"] == 0
    assert deployment(promoted, new)["spec"]["replicas"] == 6
    assert [h["spec"] for h in promoted.handover] == [{"replicas": 6}]
    hpa = next(o for o in promoted.apply if o["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == f"products-{new}"


def test_turning_autoscaling_off_takes_the_count_back_and_deletes_the_autoscaler() -> None:
    s = spec(serving=AUTO)
    v = version_of(s)
    st = _serving(s)
    st = plan(observed(s, st, {v: done_job(v)}, {v: dep(v, 2)}), SETTINGS, NOW).status
    off = spec(serving={"replicas": 3})
    p = plan(observed(off, st, {v: done_job(v)}, {v: dep(v, 5, replicas=5)}), SETTINGS, NOW)
    assert deployment(p, st.stable_revision)["spec"]["replicas"] == 3
    assert ("HorizontalPodAutoscaler", "products") in p.delete
    again = plan(observed(off, p.status, {v: done_job(v)}, {v: dep(v, 3)}), SETTINGS, NOW)
    assert ("HorizontalPodAutoscaler", "products") not in again.delete


def test_a_builder_pod_that_cannot_start_says_why_once() -> None:
    from knn_operator.observe import job_state

    s = spec(source={"uri": "s3://b/emb.npy", "dimension": 8, "secretName": "s3-creds"})
    v = version_of(s)
    st = plan(observed(s), SETTINGS, NOW).status
    job = {"metadata": {"name": f"products-build-{v}", "labels": {api.LABEL_VERSION: v}}}
    waiting = {"reason": "CreateContainerConfigError", "message": 'secret "s3-creds" not found'}
    pod = {
        "metadata": {"creationTimestamp": "2026-11-22T00:00:01Z"},
        "status": {"containerStatuses": [{"state": {"waiting": waiting}}]},
    }
    stuck = job_state(job, [pod])
    assert stuck.waiting == 'CreateContainerConfigError: secret "s3-creds" not found'
    p = plan(observed(s, st, {v: stuck}), SETTINGS, NOW)
    assert p.status.phase == "Building"
    assert 'secret "s3-creds" not found' in (p.status.message or "")
    built = next(c for c in p.status.conditions if c.type == "Built")
    assert built.reason == "BuilderPodWaiting" and built.status == "Unknown"
    assert [e.reason for e in p.events] == ["BuilderPodWaiting"]
    again = plan(observed(s, p.status, {v: stuck}), SETTINGS, NOW)
    assert not again.events, "said once"
    pod["status"] = {"containerStatuses": [{"state": {"running": {}}}]}
    running = plan(observed(s, again.status, {v: job_state(job, [pod])}), SETTINGS, NOW)
    assert running.status.message is None and running.status.builds[-1].message == ""


def budgets(p: Plan) -> dict[str, Any]:
    return {o["metadata"]["name"]: o["spec"] for o in p.apply if o["kind"] == "PodDisruptionBudget"}


def test_a_disruption_budget_per_serving_revision_comes_and_goes_with_the_spec() -> None:
    s = spec()
    v = version_of(s)
    st = _serving(s)
    stable = st.stable_revision
    assert stable is not None and not budgets(
        plan(observed(s, st, {v: done_job(v)}, {v: dep(v, 2)}), SETTINGS, NOW)
    )

    # Asked for: one per revision, selecting exactly that revision's pods; not a new
    # revision (the pods do not change).
    s2 = spec(serving={"disruptionBudget": {"maxUnavailable": 1}})
    p = plan(observed(s2, st, {v: done_job(v)}, {v: dep(v, 2)}, generation=2), SETTINGS, NOW)
    assert p.status.stable_revision == stable and p.status.canary_revision is None
    ((name, pdb),) = budgets(p).items()
    assert name == f"products-{stable}" and pdb["maxUnavailable"] == 1
    assert pdb["selector"]["matchLabels"]["knn.dev/revision"] == stable
    assert [r.disruption_budget for r in p.status.revisions] == [True]

    # No longer asked for: deleted, once, and forgotten.
    st2 = p.status
    p3 = plan(observed(s, st2, {v: done_job(v)}, {v: dep(v, 2)}, generation=3), SETTINGS, NOW)
    assert ("PodDisruptionBudget", f"products-{stable}") in p3.delete
    assert not budgets(p3) and [r.disruption_budget for r in p3.status.revisions] == [False]
    p4 = plan(observed(s, p3.status, {v: done_job(v)}, {v: dep(v, 2)}, generation=3), SETTINGS, NOW)
    assert not [d for d in p4.delete if d[0] == "PodDisruptionBudget"]


def test_a_revision_that_goes_takes_its_disruption_budget_with_it() -> None:
    s = spec(serving={"disruptionBudget": {"minAvailable": "50%"}})
    st = _serving(s)
    (first,) = st.revisions
    assert first.disruption_budget
    out = Plan()
    # The stage is handed the revisions that stay: here none of the recorded ones.
    kept = budgets_stage(observed(s, st), [], {}, out)
    assert kept == [] and out.delete == [("PodDisruptionBudget", f"products-{first.revision}")]


@pytest.mark.parametrize(
    "bad",
    [
        {"maxUnavailable": -1},
        {"minAvailable": "half"},
        {"maxUnavailable": 1, "minAvailable": 1},
        {},
    ],
)
def test_a_disruption_budget_takes_a_count_or_a_percent_and_exactly_one(
    bad: dict[str, Any],
) -> None:
    with pytest.raises(ValueError):
        DisruptionBudget.model_validate(bad)
    assert DisruptionBudget.model_validate({"maxUnavailable": "25%"}).max_unavailable == "25%"


STALLED = 'ProgressDeadlineExceeded: ReplicaSet "products-x" has timed out progressing.'


def test_a_canary_that_cannot_become_available_is_reported_once_then_recovers() -> None:
    s2, v, old, new, st = _mid_rollout()
    jobs = {v: curved_job(v)}
    stuck = replace(dep(new, 0, replicas=1), stalled=STALLED)
    p = plan(observed(s2, st, jobs, {old: dep(old, 2), new: stuck}), SETTINGS, NOW)
    why = f"revision {new} cannot become available: Deployment products-{new} {STALLED}"
    progressing = next(c for c in p.status.conditions if c.type == "Progressing")
    assert (progressing.status, progressing.reason) == ("False", "RevisionStalled")
    assert progressing.message == why and p.status.message == why
    assert p.status.phase == "Progressing" and p.status.stable_revision == old
    assert [e.message for e in p.events if e.reason == "RevisionStalled"] == [why]
    assert next(e for e in p.events if e.reason == "RevisionStalled").type == "Warning"
    again = plan(observed(s2, p.status, jobs, {old: dep(old, 2), new: stuck}), SETTINGS, NOW)
    assert not [e for e in again.events if e.reason == "RevisionStalled"]  # said once
    up = {old: dep(old, 2), new: dep(new, 1, replicas=1)}
    well = plan(observed(s2, again.status, jobs, up), SETTINGS, NOW)
    assert cond(well, "Progressing") == "True" and well.status.message is None


@pytest.mark.parametrize(
    ("conditions", "said"),
    [
        # What the Deployment controller writes after progressDeadlineSeconds.
        (
            [
                {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"},
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                 "message": 'ReplicaSet "p-1" has timed out progressing.'},
            ],
            'ProgressDeadlineExceeded: ReplicaSet "p-1" has timed out progressing.',
        ),
        # Pods that cannot be created at all (a ResourceQuota).
        (
            [{"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
              "message": 'pods "p-1-x" is forbidden: exceeded quota: compute'}],
            'FailedCreate: pods "p-1-x" is forbidden: exceeded quota: compute',
        ),
        ([{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}], ""),
    ],
)  # fmt: skip
def test_a_deployment_the_controller_gave_up_on_says_why(
    conditions: list[dict[str, str]], said: str
) -> None:
    from knn_operator.observe import deployment_state

    body = {
        "metadata": {"name": "p-1", "generation": 1, "labels": {api.LABEL_VERSION: "v1"}},
        "spec": {"replicas": 1},
        "status": {"observedGeneration": 1, "conditions": conditions},
    }
    assert deployment_state(body).stalled == said
