"""Generated manifests: security profile, probes, identity; checked-in files
equal what the generators produce (models and CRD cannot drift)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml
from knn_contracts.artifact import BuildSummary
from knn_operator import crdgen, rbac
from knn_operator.builders.common import Owner
from knn_operator.builders.deployment import serving_deployment
from knn_operator.builders.job import builder_job
from knn_operator.models.knnindex import KnnIndexSpec, KnnIndexStatus, WorkloadStatus
from knn_operator.observe import DeploymentState, JobState
from knn_operator.planning import Observed, Plan, plan
from knn_operator.planning.serving import revision_for
from knn_operator.settings import Settings
from knn_operator.versioning import version_of

ROOT = Path(__file__).resolve().parents[2]
OWNER = Owner("products", "shop", "uid-1")
SPEC = KnnIndexSpec.model_validate(
    {
        "source": {"uri": "pvc://vectors/emb.npy", "dimension": 8, "secretName": "src-creds"},
        "storage": {"uri": "pvc://artifacts/products"},
    }
)


def test_checked_in_crds_and_rbac_match_the_generators() -> None:
    for name in crdgen.CRDS:
        assert (ROOT / "crds" / name).read_text() == crdgen.render(name), (
            f"crds/{name} is stale: run `make generate`"
        )
    for name in crdgen.RBAC:
        assert (ROOT / "rbac" / name).read_text() == crdgen.render_rbac(name), (
            f"rbac/{name} is stale: run `make generate`"
        )


def test_the_charts_copies_of_crds_and_rules_match_the_generators() -> None:
    chart = ROOT / "charts" / "knn-operator"
    for name in crdgen.CHART_FILES:
        assert (chart / name).read_text() == crdgen.render_chart_file(name), (
            f"charts/knn-operator/{name} is stale: run `make generate`"
        )
    # Every CRD the repository ships is in the chart, and nothing else.
    assert sorted(p.name for p in (chart / "crds").iterdir()) == sorted(crdgen.CRDS)
    assert sorted(p.name for p in (ROOT / "crds").iterdir()) == sorted(crdgen.CRDS)
    # The chart's two rule files together are the rules rbac/ grants.
    split = [yaml.safe_load((chart / f).read_text()) for f in crdgen.CHART_RULES]
    assert [r for part in split for r in part] == rbac.RULES


def test_crd_schema_names_every_model_field() -> None:
    crd = yaml.safe_load((ROOT / "crds" / "knnindexes.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]

    def walk(model: Any, node: dict[str, Any], path: str) -> None:
        props = node["properties"]
        for name, field in model.model_fields.items():
            alias = field.alias or name
            assert alias in props, f"{path}.{alias} missing from the CRD"
            sub = field.annotation
            for candidate in getattr(sub, "__args__", (sub,)):
                if (
                    isinstance(candidate, type)
                    and hasattr(candidate, "model_fields")
                    and (props[alias].get("properties") is not None)
                ):
                    walk(candidate, props[alias], f"{path}.{alias}")

    walk(KnnIndexSpec, schema, "spec")


REV = revision_for(SPEC, Settings(), "v1", dt.datetime(2026, 12, 1, tzinfo=dt.UTC))


def _pod(obj: dict[str, Any]) -> Any:
    return obj["spec"]["template"]["spec"]


def test_job_and_deployment_meet_the_restricted_profile() -> None:
    for obj in (
        builder_job(OWNER, SPEC, "v1", Settings()),
        serving_deployment(OWNER, SPEC, REV, 2, Settings()),
    ):
        pod = _pod(obj)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert c["resources"]["requests"]
            assert {"secretRef": {"name": "src-creds"}} in c["envFrom"]


def test_pvc_sources_are_mounted_read_only_and_storage_writable_for_the_builder() -> None:
    job = builder_job(OWNER, SPEC, "v1", Settings())
    vols = {
        v["persistentVolumeClaim"]["claimName"]: v["persistentVolumeClaim"]["readOnly"]
        for v in _pod(job)["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert vols == {"vectors": True, "artifacts": False}
    dep = serving_deployment(OWNER, SPEC, REV, 2, Settings())
    vols = {
        v["persistentVolumeClaim"]["claimName"]: v["persistentVolumeClaim"]["readOnly"]
        for v in _pod(dep)["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert vols == {"vectors": True, "artifacts": True}


def test_serving_pods_carry_identity_probes_and_scrape_annotations() -> None:
    dep = serving_deployment(OWNER, SPEC, REV, 2, Settings())
    tmpl = dep["spec"]["template"]
    assert tmpl["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    c = tmpl["spec"]["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    assert env["KNN_INDEX_NAME"]["value"] == "products"
    assert env["KNN_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["command"][c["command"].index("--artifact") + 1] == "pvc://artifacts/products/v1"


# The resource (plural) of each kind the operator writes; a kind missing here fails
# the test below until its RBAC is thought about.
RESOURCES = {
    "Job": ("batch", "jobs"),
    "Deployment": ("apps", "deployments"),
    "Service": ("", "services"),
    "HorizontalPodAutoscaler": ("autoscaling", "horizontalpodautoscalers"),
}


def _allowed(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
    return any(
        group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in rules
    )


def _plans_of_a_whole_story() -> list[Plan]:
    """Plans from build to serving to a history overflow, with and then without an
    autoscaler: every kind the planner applies (builder and clean-up Jobs,
    Deployments, Services, the HorizontalPodAutoscaler) and deletes."""

    plans: list[Plan] = []
    status: WorkloadStatus = KnnIndexStatus()
    jobs: dict[str, JobState] = {}
    deps: dict[str, DeploymentState] = {}
    autoscaling = {"minReplicas": 1, "maxReplicas": 4}
    for token, auto in (("a", None), ("b", autoscaling), ("c", autoscaling), ("c", None)):
        spec = SPEC.model_copy(update={"history": SPEC.history.model_copy(update={"limit": 1})})
        spec = spec.model_copy(update={"rebuild": spec.rebuild.model_copy(update={"token": token})})
        serving = spec.serving.model_validate({"autoscaling": auto})
        spec = spec.model_copy(update={"serving": serving})
        v = version_of(spec)
        summary = BuildSummary(outcome="Succeeded", version=v, vectors=10, recall=1.0)
        jobs[v] = JobState(f"products-build-{v}", v, True, True, "Complete", summary, "")
        for _ in range(2):
            obs = Observed(OWNER, 1, spec, status, jobs, deps)
            p = plan(obs, Settings(), dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
            plans.append(p)
            status = p.status
            rev = status.target_revision or v
            deps[rev] = DeploymentState(f"products-{rev}", v, 2, 2, 2, True)
    return plans


def test_rbac_grants_every_write_the_planner_makes() -> None:
    rules = rbac.cluster_role()["rules"]
    plans = _plans_of_a_whole_story()
    applied = {(o["apiVersion"], o["kind"]) for p in plans for o in [*p.apply, *p.handover]}
    deleted = {kind for p in plans for kind, _ in p.delete}
    assert {k for _, k in applied} == set(RESOURCES) and deleted
    assert "HorizontalPodAutoscaler" in deleted
    for api_version, kind in applied:
        group, resource = RESOURCES[kind]
        assert (api_version.split("/")[0] if "/" in api_version else "") == group, api_version
        # Server-side apply is a patch; the reconciler reads what it owns back.
        for verb in ("patch", "get", "list", "watch"):
            assert _allowed(rules, group, resource, verb), (kind, verb)
    for kind in deleted:
        assert _allowed(rules, *RESOURCES[kind], "delete"), kind
    assert rbac.role("ns")["rules"] == rules
    # And nothing broader than needed on what it does not own.
    # Secrets: only `get` by name, for the Prometheus credentials an analysis names;
    # never list or watch (which would read every Secret in the cluster).
    assert _allowed(rules, "", "secrets", "get")
    assert not any(_allowed(rules, "", "secrets", v) for v in ("list", "watch", "patch"))
    assert not _allowed(rules, "knn.dev", "knnindexes", "patch"), "the operator never writes spec"


POD = {
    "nodeSelector": {"pool": "search"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "search"}],
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}},
    "imagePullSecrets": [{"name": "registry"}],
    "priorityClassName": "search-critical",
    "labels": {"team": "search"},
    "annotations": {"example.com/owner": "search"},
}


def test_pod_overrides_reach_the_builder_and_serving_pods_beside_the_operators_labels() -> None:
    spec = KnnIndexSpec.model_validate(
        {**SPEC.model_dump(by_alias=True), "build": {"pod": POD}, "serving": {"pod": POD}}
    )
    rev = revision_for(spec, Settings(), "v1", dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
    for obj in (
        builder_job(OWNER, spec, "v1", Settings()),
        serving_deployment(OWNER, spec, rev, 2, Settings()),
    ):
        template = obj["spec"]["template"]
        pod = template["spec"]
        assert pod["nodeSelector"] == {"pool": "search"}
        assert pod["tolerations"] == POD["tolerations"]
        assert pod["affinity"] == POD["affinity"]
        assert pod["imagePullSecrets"] == [{"name": "registry"}]
        assert pod["priorityClassName"] == "search-critical"
        assert template["metadata"]["labels"]["team"] == "search"
        assert template["metadata"]["labels"]["app.kubernetes.io/instance"] == "products"
        assert template["metadata"]["annotations"]["example.com/owner"] == "search"
        # The restricted profile is not something an override can take away.
        assert pod["securityContext"]["runAsNonRoot"] is True
    dep = serving_deployment(OWNER, spec, rev, 2, Settings())
    assert dep["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert "team" not in dep["spec"]["selector"]["matchLabels"]


def test_serving_pod_overrides_make_a_new_revision_and_none_keeps_the_old_id() -> None:
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    with_pod = KnnIndexSpec.model_validate(
        {**SPEC.model_dump(by_alias=True), "serving": {"pod": {"labels": {"team": "a"}}}}
    )
    other = KnnIndexSpec.model_validate(
        {**SPEC.model_dump(by_alias=True), "serving": {"pod": {"labels": {"team": "b"}}}}
    )
    ids = {revision_for(s, Settings(), "v1", now).revision for s in (SPEC, with_pod, other)}
    assert len(ids) == 3
    # Build-side overrides change where the build runs, not what it builds or serves.
    build_only = KnnIndexSpec.model_validate(
        {**SPEC.model_dump(by_alias=True), "build": {"pod": {"labels": {"team": "a"}}}}
    )
    assert revision_for(build_only, Settings(), "v1", now).revision == REV.revision
    assert version_of(build_only) == version_of(SPEC)


def test_reserved_pod_labels_are_refused_by_the_model_too() -> None:
    with pytest.raises(ValueError, match=r"knn\.dev/revision"):
        KnnIndexSpec.model_validate(
            {
                **SPEC.model_dump(by_alias=True),
                "serving": {"pod": {"labels": {"knn.dev/revision": "x"}}},
            }
        )
