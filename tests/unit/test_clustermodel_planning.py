"""A ClusterModel planned by the kind-generic planner: the k-means builder Job, the
serving Deployment with --model-name, the canary of a retrained version (with the
stable's artifact as --previous), and status carrying k, silhouette and inertia.

Pure tier: observations built by hand, as in test_operator_planning.py.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from knn_contracts import api
from knn_contracts.artifact import BuildSummary
from knn_operator.builders.common import Owner
from knn_operator.models.clustermodel import ClusterModelSpec, ClusterModelStatus
from knn_operator.models.knnindex import WorkloadStatus
from knn_operator.observe import DeploymentState, JobState
from knn_operator.planning import Observed, Plan, plan
from knn_operator.planning.serving import revision_for
from knn_operator.planning.workload import KMEANS
from knn_operator.routers.replicas import ReplicaRouter
from knn_operator.settings import Settings
from knn_operator.versioning import kmeans_version_of
from pydantic import ValidationError

OWNER = Owner("segments", "shop", "uid-9", api.CLUSTER_MODEL_KIND)
SETTINGS = Settings()
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def spec(**overrides: Any) -> ClusterModelSpec:
    doc: dict[str, Any] = {
        "source": {"uri": "s3://b/customers.npy", "dimension": 8},
        "kmeans": {"clusters": 4},
        "storage": {"uri": "s3://artifacts/segments"},
        "serving": {"replicas": 2},
        "rollout": {"steps": [{"setWeight": 50}, {"pause": {"duration": "60s"}}]},
    }
    doc.update(overrides)
    return ClusterModelSpec.model_validate(doc)


def model_status(st: WorkloadStatus) -> ClusterModelStatus:
    assert isinstance(st, ClusterModelStatus)
    return st


def trained(version: str, ok: bool = True, silhouette: float = 0.61) -> JobState:
    summary = BuildSummary(
        outcome="Succeeded" if ok else "Failed",
        kind="kmeans",
        version=version,
        vectors=5000,
        clusters=4,
        inertia=1234.5,
        silhouette=silhouette,
        build_seconds=2.0,
        artifact=f"s3://artifacts/segments/{version}",
        sha256="cd" * 32,
        message="" if ok else "silhouette 0.12 is below --min-silhouette 0.3",
    )
    return JobState(
        f"segments-build-{version}",
        version,
        True,
        ok,
        "Complete" if ok else "BackoffLimitExceeded",
        summary,
        summary.message,
    )


def rev(s: ClusterModelSpec, version: str) -> str:
    return revision_for(s, SETTINGS, version, NOW, KMEANS).revision


def observed(
    s: ClusterModelSpec,
    status: WorkloadStatus | None = None,
    jobs: dict[str, JobState] | None = None,
    available: dict[str, int] | None = None,
) -> Observed:
    deps = {
        r: DeploymentState(f"segments-{r}", r, 2, n, 2, True) for r, n in (available or {}).items()
    }
    return Observed(
        OWNER,
        1,
        s,
        status or ClusterModelStatus(),
        jobs or {},
        deps,
        workload=KMEANS,
    )


def command(p: Plan, kind: str) -> list[str]:
    obj = next(o for o in p.apply if o["kind"] == kind)
    return list(obj["spec"]["template"]["spec"]["containers"][0]["command"])


def flag(cmd: list[str], name: str) -> str | None:
    return cmd[cmd.index(name) + 1] if name in cmd else None


def test_a_new_model_starts_a_kmeans_training_job_with_every_parameter_explicit() -> None:
    s = spec(build={"validation": {"minSilhouette": 0.3, "maxInertiaRegression": 0.1}})
    v = kmeans_version_of(s)
    p = plan(observed(s), SETTINGS, NOW)
    job = next(o for o in p.apply if o["kind"] == "Job")
    assert job["metadata"]["name"] == f"segments-build-{v}"
    assert job["metadata"]["labels"][api.LABEL_MODEL] == "segments"
    assert api.LABEL_INDEX not in job["metadata"]["labels"]
    assert job["metadata"]["ownerReferences"][0]["kind"] == "ClusterModel"
    cmd = command(p, "Job")
    assert cmd[:3] == ["knn-build", "--kind", "kmeans"]
    assert flag(cmd, "--clusters") == "4" and flag(cmd, "--n-init") == "3"
    assert flag(cmd, "--max-iter") == "300" and flag(cmd, "--seed") == "42"
    assert flag(cmd, "--min-silhouette") == "0.3" and flag(cmd, "--version") == v
    # Nothing serves yet: there is no previous version to regress from.
    assert "--previous" not in cmd and "--max-inertia-regression" not in cmd
    assert "--metric" not in cmd and "--min-recall" not in cmd
    assert p.status.phase == "Building" and isinstance(p.status, ClusterModelStatus)


def test_a_clusters_range_is_passed_as_min_max() -> None:
    s = spec(kmeans={"clustersRange": {"min": 2, "max": 9}})
    cmd = command(plan(observed(s), SETTINGS, NOW), "Job")
    assert flag(cmd, "--clusters-range") == "2:9" and "--clusters" not in cmd


def test_the_version_names_training_inputs_but_not_the_gate() -> None:
    base = kmeans_version_of(spec())
    assert kmeans_version_of(spec(kmeans={"clusters": 5})) != base
    assert kmeans_version_of(spec(kmeans={"clusters": 4, "seed": 7})) != base
    gated = spec(build={"validation": {"minSilhouette": 0.5, "minClusterFraction": 0.2}})
    assert kmeans_version_of(gated) == base
    assert kmeans_version_of(spec(), "again") != base


def _serving(s: ClusterModelSpec) -> tuple[str, WorkloadStatus]:
    v = kmeans_version_of(s)
    st = plan(observed(s), SETTINGS, NOW).status
    st = plan(observed(s, st, {v: trained(v)}), SETTINGS, NOW).status
    st = plan(observed(s, st, {v: trained(v)}, {rev(s, v): 2}), SETTINGS, NOW).status
    return v, st


def test_a_trained_model_is_served_with_model_name_and_reports_k_and_silhouette() -> None:
    s = spec()
    v = kmeans_version_of(s)
    st = plan(observed(s), SETTINGS, NOW).status
    p = plan(observed(s, st, {v: trained(v)}), SETTINGS, NOW)
    cmd = command(p, "Deployment")
    assert cmd[0] == "knn-serve" and flag(cmd, "--model-name") == "segments"
    assert "--ef-search" not in cmd
    assert flag(cmd, "--artifact") == f"s3://artifacts/segments/{v}"
    succeeded = next(e for e in p.events if e.reason == "BuildSucceeded")
    assert "k=4" in succeeded.message and "silhouette 0.61" in succeeded.message
    build = p.status.builds[-1]
    assert (build.clusters, build.silhouette, build.inertia) == (4, 0.61, 1234.5)
    svc = next(o for o in p.apply if o["kind"] == "Service")
    assert svc["spec"]["selector"][api.LABEL_MODEL] == "segments"
    v, st = _serving(s)
    m = model_status(st)
    assert m.phase == "Serving" and m.stable_version == v
    assert (m.clusters, m.silhouette, m.inertia) == (4, 0.61, 1234.5)
    ready = next(c for c in m.conditions if c.type == "Ready")
    assert ready.status == "True"
    # A model has no serving-time parameter to refuse once its gate passed.
    accepted = next(c for c in m.conditions if c.type == "ServingSpecAccepted")
    assert accepted.status == "True"


def test_a_retrained_version_is_gated_against_the_stable_and_rolled_out_as_a_canary() -> None:
    s1 = spec(build={"validation": {"maxInertiaRegression": 0.1}})
    v1, st = _serving(s1)
    s2 = spec(build={"validation": {"maxInertiaRegression": 0.1}}, kmeans={"clusters": 5})
    v2 = kmeans_version_of(s2)
    p = plan(observed(s2, st, {v1: trained(v1)}, {rev(s1, v1): 2}), SETTINGS, NOW)
    cmd = command(p, "Job")
    assert flag(cmd, "--previous") == f"s3://artifacts/segments/{v1}"
    assert flag(cmd, "--max-inertia-regression") == "0.1"
    assert p.status.phase == "Progressing" and p.status.stable_version == v1
    jobs = {v1: trained(v1), v2: trained(v2, silhouette=0.7)}
    p = plan(observed(s2, p.status, jobs, {rev(s1, v1): 2}), SETTINGS, NOW)
    assert p.status.canary_revision == rev(s2, v2)
    canary = next(
        o for o in p.apply if o["kind"] == "Deployment" and rev(s2, v2) in o["metadata"]["name"]
    )
    # The replica router sizes the canary for the first step's weight.
    assert p.status.rollout is not None and p.status.rollout.weight == 50
    assert canary["spec"]["replicas"] == ReplicaRouter().split(2, 50).canary
    assert model_status(p.status).silhouette == 0.61, "status reports the stable's model"


def test_a_failed_gate_leaves_the_stable_serving() -> None:
    s1 = spec()
    v1, st = _serving(s1)
    s2 = spec(kmeans={"clusters": 6}, build={"validation": {"minSilhouette": 0.3}})
    v2 = kmeans_version_of(s2)
    jobs = {v1: trained(v1), v2: trained(v2, ok=False)}
    p = plan(observed(s2, st, jobs, {rev(s1, v1): 2}), SETTINGS, NOW)
    assert p.status.phase == "Serving" and p.status.stable_version == v1
    assert "below --min-silhouette" in (p.status.message or "")
    assert any(e.reason == "BuildFailed" for e in p.events)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"kmeans": {"clusters": 1}}, "kmeans.clusters"),
        ({"kmeans": {"clusters": 4, "nInit": 0}}, "kmeans.nInit"),
        ({"kmeans": {"clusters": 4}, "build": {"validation": {"minSilhouette": 2}}}, "build"),
    ],
)
def test_the_models_refuse_out_of_range_fields(doc: dict[str, Any], message: str) -> None:
    # Cross-field rules are CEL, checked by the real API server (tests/controlplane).
    with pytest.raises(ValidationError, match=message.replace(".", r"\.")):
        spec(**doc)


def test_the_job_and_deployment_commands_parse_with_the_real_clis() -> None:
    """Every flag the operator writes is one knn-build / knn-serve accept, together."""
    from knn_serving.build import cli as build_cli
    from knn_serving.serve import cli as serve_cli

    s1 = spec(
        kmeans={"clustersRange": {"min": 3, "max": 7}, "miniBatchAbove": 1000, "batchSize": 256},
        build={
            "threads": 2,
            "validation": {"minSilhouette": 0.1, "maxInertiaRegression": 0.2},
        },
    )
    v1, st = _serving(s1)
    s2 = spec(kmeans={"clusters": 5}, build={"validation": {"maxInertiaRegression": 0.2}})
    p = plan(observed(s2, st, {v1: trained(v1)}, {rev(s1, v1): 2}), SETTINGS, NOW)
    for s, job in (
        (s1, command(plan(observed(s1), SETTINGS, NOW), "Job")),
        (s2, command(p, "Job")),
    ):
        args = build_cli.parser().parse_args(job[1:])
        assert build_cli.kind_conflict(args) is None, job
        assert args.kind == "kmeans" and args.version == kmeans_version_of(s)
    assert build_cli.parser().parse_args(command(p, "Job")[1:]).previous.endswith(v1)
    serve = serve_cli.parser().parse_args(command(p, "Deployment")[1:])
    assert serve.model_name == "segments" and serve.ef_search is None


def test_a_model_retrains_on_its_schedule_as_a_new_version() -> None:
    """spec.rebuild is shared with KnnIndex: a fire names the k-means version's token."""
    s = spec(rebuild={"schedule": "0 3 * * *"})
    v, st = _serving(s)
    assert kmeans_version_of(s) == kmeans_version_of(spec()), "no trigger: same version"
    fire = dt.datetime(2026, 12, 1, 3, 0, 5, tzinfo=dt.UTC)
    p = plan(observed(s, st, {v: trained(v)}, {rev(s, v): 2}), SETTINGS, fire)
    v2 = kmeans_version_of(s, None, "schedule@2026-12-01T03:00:00Z")
    assert v2 != v
    assert [o["metadata"]["name"] for o in p.apply if o["kind"] == "Job"] == [
        f"segments-build-{v2}"
    ]
    assert flag(command(p, "Job"), "--kind") == "kmeans"
    last = p.status.last_rebuild
    assert last is not None and (last.reason, last.version) == ("Schedule", v2)
    assert p.status.stable_version == v


def test_a_model_on_drift_measures_its_psi_by_default() -> None:
    from knn_operator.kinds.knnindex_drift import drift_query

    s = spec(
        rebuild={
            "onDrift": {"threshold": 0.25, "for": "10m", "prometheus": {"address": "http://p"}}
        }
    )
    obs = observed(s)
    assert drift_query(obs, "va-1") == (
        'max(knn_cluster_drift_psi{namespace="shop",model="segments",version="va-1"})'
    )
