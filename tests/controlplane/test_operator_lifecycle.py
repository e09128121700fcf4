"""The operator's build → serve story on the real API server, with the chart's RBAC.

The test plays the kubelet and the Job/Deployment controllers (operator_support).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import pytest
from knn_devtools.kubectl import Kubectl
from knn_operator.models.knnindex import KnnIndexSpec
from knn_operator.versioning import version_of

if TYPE_CHECKING:
    from tests.controlplane import operator_support as ops
else:
    import operator_support as ops

pytestmark = pytest.mark.controlplane

SPEC: dict[str, Any] = {
    "source": {"uri": "s3://vectors/products/emb.npy", "dimension": 384},
    "metric": "l2",
    "hnsw": {"m": 24, "efConstruction": 300, "efSearch": 80},
    "build": {
        "validation": {"probeQueries": 200, "k": 20, "minRecall": 0.9},
        "resources": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "8Gi"}},
        "timeoutSeconds": 1800,
        "backoffLimit": 3,
    },
    "storage": {"uri": "s3://artifacts/products"},
    "serving": {"replicas": 2},
}


def version_for(spec: dict[str, Any]) -> str:
    return version_of(KnnIndexSpec.model_validate(ops.merge(ops.MINIMAL_SPEC, spec)))


def _arg(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_build_serve_story(
    kubectl: Kubectl, namespace: str, start_operator: ops.OperatorStarter
) -> None:
    operator = start_operator()
    ns, name = namespace, "products"
    version = version_for(SPEC)
    job_name = f"{name}-build-{version}"

    ops.apply(kubectl, ns, ops.knn_index(name, SPEC))
    index = ops.get(kubectl, "knn", name, ns)
    assert index is not None

    # -- the builder Job ------------------------------------------------------------
    job = ops.wait_for(
        f"Job {job_name}",
        lambda: ops.get(kubectl, "job", job_name, ns),
        diagnostics=operator.log_tail,
    )
    labels = job["metadata"]["labels"]
    assert labels["knn.dev/index"] == name
    assert labels["knn.dev/version"] == version
    assert labels["knn.dev/component"] == "builder"
    [owner] = job["metadata"]["ownerReferences"]
    assert owner["kind"] == "KnnIndex"
    assert owner["name"] == name
    assert owner["uid"] == index["metadata"]["uid"]
    assert owner["controller"] is True
    assert job["spec"]["backoffLimit"] == 3
    assert job["spec"]["activeDeadlineSeconds"] == 1800
    pod_spec = job["spec"]["template"]["spec"]
    assert pod_spec["restartPolicy"] == "Never"
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    assert pod_spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    [container] = pod_spec["containers"]
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert container["resources"] == {
        "requests": {"cpu": "2", "memory": "4Gi"},
        "limits": {"memory": "8Gi"},
    }
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    command = container["command"]
    assert command[0] == "knn-build"
    expected_args = {
        "--source": "s3://vectors/products/emb.npy",
        "--dimension": "384",
        "--metric": "l2",
        "--m": "24",
        "--ef-construction": "300",
        "--probe-queries": "200",
        "--k": "20",
        "--min-recall": "0.9",
        "--version": version,
        "--out": "s3://artifacts/products",
    }
    assert {flag: _arg(command, flag) for flag in expected_args} == expected_args
    assert "--ef-search" not in command, "efSearch belongs to serving, not to the artifact"

    ops.wait_phase(kubectl, ns, name, "Building", operator)
    ops.wait_for(
        "Event BuildStarted",
        lambda: ("Normal", "BuildStarted") in ops.event_reasons(kubectl, ns, name),
    )
    assert not ops.serving_deployments(kubectl, ns, name, version), "served before it was built"

    # -- the build completes ----------------------------------------------------------
    built = ops.summary(version, vectors=123_456, recall=0.9731, build_seconds=17.25)
    ops.complete_build(kubectl, ns, job_name, built)

    def record() -> dict[str, Any] | None:
        status = (ops.get(kubectl, "knn", name, ns) or {}).get("status", {})
        return next(
            (
                b
                for b in status.get("builds", [])
                if b["version"] == version and b["outcome"] == "Succeeded"
            ),
            None,
        )

    rec = ops.wait_for("a Succeeded build record", record, diagnostics=operator.log_tail)
    assert rec["recall"] == pytest.approx(0.9731)
    assert rec["vectors"] == 123_456
    assert rec["buildSeconds"] == pytest.approx(17.25)
    assert rec["sha256"] == built.sha256
    assert rec["artifact"] == built.artifact

    dep_name = ops.wait_serving_deployment(kubectl, ns, name, version, operator)
    revision = dep_name.removeprefix(f"{name}-")
    assert revision.startswith(f"{version}-"), "a revision id starts with its version"
    dep = ops.get(kubectl, "deployment", dep_name, ns)
    assert dep is not None
    svc = ops.wait_for(f"Service {dep_name}", lambda: ops.get(kubectl, "service", dep_name, ns))
    assert dep["spec"]["replicas"] == 2
    assert dep["metadata"]["ownerReferences"][0]["uid"] == index["metadata"]["uid"]
    template = dep["spec"]["template"]
    assert template["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8080",
        "prometheus.io/path": "/metrics",
    }
    [serve] = template["spec"]["containers"]
    assert serve["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert serve["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert serve["command"][0] == "knn-serve"
    assert _arg(serve["command"], "--artifact") == f"s3://artifacts/products/{version}"
    assert _arg(serve["command"], "--ef-search") == "80"
    assert svc["spec"]["selector"]["knn.dev/revision"] == revision
    assert svc["spec"]["selector"] == template["metadata"]["labels"]
    assert ops.status_of(kubectl, ns, name)["targetRevision"] == revision

    status = ops.wait_phase(kubectl, ns, name, "Progressing", operator)
    assert ops.condition({"status": status}, "Ready")["status"] == "False"  # type: ignore[index]
    assert ops.get(kubectl, "service", name, ns) is None, "stable Service before availability"

    # -- the Deployment becomes available ------------------------------------------------
    ops.make_available(kubectl, ns, dep_name)
    ops.wait_phase(kubectl, ns, name, "Serving", operator)
    kubectl.run(
        "wait", "--for=condition=Ready", f"knn/{name}", "-n", ns, "--timeout=60s", timeout=70
    )
    stable = ops.wait_for(f"Service {name}", lambda: ops.get(kubectl, "service", name, ns))
    # The replica router: the index's Service selects every serving revision.
    assert stable["spec"]["selector"]["knn.dev/index"] == name
    assert stable["spec"]["selector"]["knn.dev/component"] == "serving"
    assert "knn.dev/version" not in stable["spec"]["selector"]
    final = ops.get(kubectl, "knn", name, ns)
    assert final is not None
    assert final["status"]["stableVersion"] == version
    assert final["status"]["stableRevision"] == revision
    assert final["status"]["recall"] == pytest.approx(0.9731)
    assert final["status"]["observedGeneration"] == final["metadata"]["generation"]
    ops.wait_for(
        "Events BuildSucceeded and Promoted",
        lambda: (
            {("Normal", "BuildSucceeded"), ("Normal", "Promoted")}
            <= ops.event_reasons(kubectl, ns, name)
        ),
    )

    # -- what a user sees -----------------------------------------------------------------
    table = kubectl.run("get", "knn", "-n", ns).stdout
    header, *rows = table.splitlines()
    assert header.split() == ["NAME", "PHASE", "STABLE", "CANARY", "WEIGHT", "RECALL", "AGE"]
    [row] = rows
    assert row.split()[:4] == [name, "Serving", revision, "0.9731"], table
    described = kubectl.run("describe", "knn", name, "-n", ns).stdout
    events_section = described.split("Events:", 1)[1]
    for reason in ("BuildStarted", "BuildSucceeded", "Promoted"):
        assert re.search(rf"Normal\s+{reason}\s", events_section), described
    assert "knn-operator" in events_section, "Events should come from knn-operator"
    # Exactly the chart's ClusterRole was enough: nothing was refused along the way.
    assert "forbidden" not in operator.log_text().lower(), operator.log_tail(80)
    print(f"\n$ kubectl get knn -n {ns}\n{table}")
    print(f"$ kubectl describe knn {name} -n {ns}\n{described}")
    print(json.dumps(final["status"]["builds"], indent=2))


def test_failed_build_is_reported_and_never_served(
    kubectl: Kubectl, namespace: str, start_operator: ops.OperatorStarter
) -> None:
    operator = start_operator()
    ns, name = namespace, "broken"
    ops.apply(kubectl, ns, ops.knn_index(name))
    version = ops.expected_version({})
    ops.wait_job(kubectl, ns, name, version, operator)
    reason = "recall 0.41 is below build.validation.minRecall 0.95"
    ops.fail_build(kubectl, ns, f"{name}-build-{version}", reason)

    status = ops.wait_phase(kubectl, ns, name, "Failed", operator)
    assert reason in status["message"]
    built = ops.condition({"status": status}, "Built")
    assert built is not None and built["status"] == "False", status
    assert built["reason"] == "BuildFailed"
    assert reason in built["message"]
    [record] = [b for b in status["builds"] if b["version"] == version]
    assert record["outcome"] == "Failed" and reason in record["message"]
    ready = ops.condition({"status": status}, "Ready")
    assert ready is not None and ready["status"] == "False"
    ops.wait_for(
        "Warning Event BuildFailed naming the reason",
        lambda: any(
            e["type"] == "Warning" and e["reason"] == "BuildFailed" and reason in e["message"]
            for e in ops.events(kubectl, ns, name)
        ),
    )
    # Reconciles later (the resync looks at every object again) nothing was served
    # from the failed version and nothing was rebuilt.
    ops.wait_reconciles(operator, 2)
    assert ops.items(kubectl, "deployments", ns) == []
    assert ops.items(kubectl, "services", ns) == []
    assert len(ops.items(kubectl, "jobs", ns)) == 1, "a failed version is not rebuilt by itself"
    assert ops.status_of(kubectl, ns, name)["phase"] == "Failed"


def test_failed_new_version_leaves_the_stable_version_serving(
    kubectl: Kubectl, namespace: str, start_operator: ops.OperatorStarter
) -> None:
    operator = start_operator()
    ns, name = namespace, "products"
    v1 = ops.expected_version({})
    ops.apply(kubectl, ns, ops.knn_index(name))
    ops.build_and_serve(kubectl, ns, name, v1, operator)
    [v1_dep] = ops.serving_deployments(kubectl, ns, name, v1)
    before_dep = ops.get(kubectl, "deployment", v1_dep, ns)
    before_svc = ops.get(kubectl, "service", name, ns)
    assert before_dep is not None and before_svc is not None

    change = {"hnsw": {"m": 32}}
    v2 = ops.expected_version(change)
    assert v2 != v1
    ops.apply(kubectl, ns, ops.knn_index(name, change))
    ops.wait_job(kubectl, ns, name, v2, operator)
    ops.fail_build(kubectl, ns, f"{name}-build-{v2}", "source has 12 vectors, fewer than k")

    # A failed rebuild beside a serving stable is not a Failed index.
    status = ops.wait_for(
        "Built=False with the stable still Serving",
        lambda: (
            s
            if (s := ops.status_of(kubectl, ns, name)).get("phase") == "Serving"
            and (ops.condition({"status": s}, "Built") or {}).get("status") == "False"
            else None
        ),
        diagnostics=operator.log_tail,
    )
    assert "fewer than k" in status["message"]
    assert status["stableVersion"] == v1
    assert ops.condition({"status": status}, "Built")["status"] == "False"  # type: ignore[index]
    ready = ops.condition({"status": status}, "Ready")
    assert ready is not None and ready["status"] == "True", "the stable version still serves"
    kubectl.run("wait", "--for=condition=Ready", f"knn/{name}", "-n", ns, "--timeout=10s")

    after_dep = ops.get(kubectl, "deployment", v1_dep, ns)
    after_svc = ops.get(kubectl, "service", name, ns)
    assert after_dep is not None and after_svc is not None
    assert after_dep["metadata"]["generation"] == before_dep["metadata"]["generation"]
    assert after_dep["spec"] == before_dep["spec"]
    assert after_svc["spec"]["selector"] == before_svc["spec"]["selector"]
    assert not ops.serving_deployments(kubectl, ns, name, v2)


def _jobs(kubectl: Kubectl, ns: str, name: str) -> set[str]:
    return {j["metadata"]["name"] for j in ops.items(kubectl, "jobs", ns, f"knn.dev/index={name}")}


@pytest.mark.parametrize(
    "change",
    [{"metric": "ip"}, {"hnsw": {"m": 32}}],
    ids=["metric", "hnsw.m"],
)
def test_artifact_changes_build_a_new_version(
    kubectl: Kubectl,
    namespace: str,
    start_operator: ops.OperatorStarter,
    change: dict[str, Any],
) -> None:
    operator = start_operator()
    ns, name = namespace, "products"
    v1, v2 = ops.expected_version({}), ops.expected_version(change)
    assert v1 != v2
    ops.apply(kubectl, ns, ops.knn_index(name))
    ops.build_and_serve(kubectl, ns, name, v1, operator)
    [v1_dep] = ops.serving_deployments(kubectl, ns, name, v1)

    ops.apply(kubectl, ns, ops.knn_index(name, change))
    job = ops.wait_job(kubectl, ns, name, v2, operator)
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    if "metric" in change:
        assert _arg(command, "--metric") == "ip"
    else:
        assert _arg(command, "--m") == "32"
    status = ops.wait_phase(kubectl, ns, name, "Progressing", operator)
    assert status["stableVersion"] == v1, "the old version serves while the new one builds"
    assert status["targetVersion"] == v2
    assert status["observedGeneration"] == 2
    assert _jobs(kubectl, ns, name) == {f"{name}-build-{v1}", f"{name}-build-{v2}"}

    # The new version takes over once built and available.
    ops.build_and_serve(kubectl, ns, name, v2, operator)
    assert ops.status_of(kubectl, ns, name)["stableVersion"] == v2
    # The previous version stays, scaled to zero, within history.limit.
    old = ops.wait_for(
        "the old revision at zero replicas",
        lambda: _at_replicas(ops.get(kubectl, "deployment", v1_dep, ns), 0),
    )
    assert old


def test_replicas_scale_in_place_and_a_serving_change_is_a_new_revision(
    kubectl: Kubectl, namespace: str, start_operator: ops.OperatorStarter
) -> None:
    operator = start_operator()
    ns, name = namespace, "products"
    base = {"serving": {"replicas": 2}, "hnsw": {"efSearch": 64}}
    version = ops.expected_version(base)
    ops.apply(kubectl, ns, ops.knn_index(name, base))
    ops.build_and_serve(kubectl, ns, name, version, operator)
    [dep_name] = ops.serving_deployments(kubectl, ns, name, version)
    before = ops.get(kubectl, "deployment", dep_name, ns)
    assert before is not None

    # Replicas alone: the same Deployment scales; no rollout, no alarm.
    ops.apply(kubectl, ns, ops.knn_index(name, {**base, "serving": {"replicas": 5}}))
    scaled = ops.wait_for(
        "the Deployment at 5 replicas",
        lambda: _at_replicas(ops.get(kubectl, "deployment", dep_name, ns), 5),
        diagnostics=operator.log_tail,
    )
    assert scaled
    ops.wait_reconciles(operator, 2)
    status = ops.status_of(kubectl, ns, name)
    assert status["phase"] == "Serving" and status.get("canaryRevision") is None, status
    assert ops.condition({"status": status}, "Ready")["status"] == "True"  # type: ignore[index]
    assert ("Warning", "Degraded") not in ops.event_reasons(kubectl, ns, name)
    ops.make_available(kubectl, ns, dep_name)

    # efSearch: a new revision of the same version, through the rollout (no steps: it
    # replaces the stable once available, and says so).
    change = {"serving": {"replicas": 5}, "hnsw": {"efSearch": 128}}
    assert ops.expected_version(change) == version, "serving parameters are not artifact inputs"
    ops.apply(kubectl, ns, ops.knn_index(name, change))
    new_dep = ops.wait_for(
        "a second revision's Deployment",
        lambda: next(
            (d for d in ops.serving_deployments(kubectl, ns, name, version) if d != dep_name),
            None,
        ),
        diagnostics=operator.log_tail,
    )
    new = ops.get(kubectl, "deployment", new_dep, ns)
    assert new is not None
    assert _arg(new["spec"]["template"]["spec"]["containers"][0]["command"], "--ef-search") == "128"
    old = ops.get(kubectl, "deployment", dep_name, ns)
    assert old is not None and old["metadata"]["generation"] == scaled["metadata"]["generation"]
    assert _jobs(kubectl, ns, name) == {f"{name}-build-{version}"}, "no rebuild"
    ops.make_available(kubectl, ns, new_dep)
    status = ops.wait_for(
        "the new revision stable",
        lambda: (
            s
            if (s := ops.status_of(kubectl, ns, name)).get("stableRevision")
            == new_dep.removeprefix(f"{name}-")
            else None
        ),
        diagnostics=operator.log_tail,
    )
    assert status["servingEfSearch"] == 128 and status["observedGeneration"] == 3
    assert ("Normal", "PromotedWithoutSteps") in ops.event_reasons(kubectl, ns, name)
    retired = ops.wait_for(
        "the old revision scaled to zero",
        lambda: _at_replicas(ops.get(kubectl, "deployment", dep_name, ns), 0),
    )
    assert retired


def _at_replicas(dep: dict[str, Any] | None, replicas: int) -> dict[str, Any] | None:
    return dep if dep is not None and dep["spec"]["replicas"] == replicas else None


def test_spec_change_during_a_build_supersedes_it(
    kubectl: Kubectl, namespace: str, start_operator: ops.OperatorStarter
) -> None:
    """The newest spec wins: an unfinished build of an older spec is cancelled (its
    Job deleted) and its record leaves status, however often that happens."""
    operator = start_operator()
    ns, name = namespace, "products"
    versions = [ops.expected_version({"rebuild": {"token": str(i)}}) for i in range(4)]
    for i, version in enumerate(versions):
        ops.apply(kubectl, ns, ops.knn_index(name, {"rebuild": {"token": str(i)}}))
        ops.wait_job(kubectl, ns, name, version, operator)
    last = versions[-1]
    ops.wait_for(
        "only the newest build's Job and record",
        lambda: (
            _jobs(kubectl, ns, name) == {f"{name}-build-{last}"}
            and [b["version"] for b in ops.status_of(kubectl, ns, name).get("builds", [])] == [last]
        ),
        diagnostics=lambda: f"{_jobs(kubectl, ns, name)} {ops.status_of(kubectl, ns, name)}",
    )
    superseded = [e for e in ops.events(kubectl, ns, name) if e["reason"] == "BuildSuperseded"]
    assert {v for v in versions[:-1] if any(v in e["message"] for e in superseded)} == set(
        versions[:-1]
    )
    ops.build_and_serve(kubectl, ns, name, last, operator)


def test_stable_version_losing_its_replicas_degrades_then_recovers(
    kubectl: Kubectl, namespace: str, start_operator: ops.OperatorStarter
) -> None:
    operator = start_operator()
    ns, name = namespace, "products"
    version = ops.expected_version({})
    ops.apply(kubectl, ns, ops.knn_index(name))
    ops.build_and_serve(kubectl, ns, name, version, operator)
    [dep_name] = ops.serving_deployments(kubectl, ns, name, version)

    ops.make_unavailable(kubectl, ns, dep_name)
    status = ops.wait_phase(kubectl, ns, name, "Degraded", operator)
    assert ops.condition({"status": status}, "Ready")["status"] == "False"  # type: ignore[index]
    assert ops.condition({"status": status}, "Degraded")["status"] == "True"  # type: ignore[index]
    assert status["stableVersion"] == version
    ops.wait_for(
        "Warning Event Degraded",
        lambda: ("Warning", "Degraded") in ops.event_reasons(kubectl, ns, name),
    )

    ops.make_available(kubectl, ns, dep_name)
    status = ops.wait_phase(kubectl, ns, name, "Serving", operator)
    assert ops.condition({"status": status}, "Degraded")["status"] == "False"  # type: ignore[index]
    kubectl.run("wait", "--for=condition=Ready", f"knn/{name}", "-n", ns, "--timeout=30s")
    assert len(ops.items(kubectl, "jobs", ns)) == 1, "losing replicas is not a reason to rebuild"


def test_longest_allowed_name_gets_its_job_deployment_and_services(
    kubectl: Kubectl, namespace: str, start_operator: ops.OperatorStarter
) -> None:
    operator = start_operator()
    ns, name = namespace, "a" * 47
    version = ops.expected_version({})
    ops.apply(kubectl, ns, ops.knn_index(name))
    job = ops.wait_job(kubectl, ns, name, version, operator)
    assert len(job["metadata"]["name"]) == 63
    ops.build_and_serve(kubectl, ns, name, version, operator)
    [dep_name] = ops.serving_deployments(kubectl, ns, name, version)
    assert len(dep_name) == 63, "<name>-<revision> at the longest name fits a Service name"
    assert ops.get(kubectl, "service", dep_name, ns) is not None
    assert ops.get(kubectl, "service", name, ns) is not None


def test_an_ef_search_under_the_recorded_recall_gate_is_refused(
    kubectl: Kubectl, namespace: str, start_operator: ops.OperatorStarter
) -> None:
    """The build records recall by efSearch; a serving change to an efSearch whose
    recorded recall is under minRecall gets a condition and a Warning Event, and
    the stable version keeps serving at the efSearch it had."""
    operator = start_operator()
    ns, name = namespace, "products"
    base = {"hnsw": {"efSearch": 64}, "build": {"validation": {"minRecall": 0.9}}}
    version = ops.expected_version(base)
    curve = [(10, 0.61, 20.0), (16, 0.715, 25.0), (32, 0.863, 40.0), (64, 0.953, 70.0)]
    built = ops.summary(version, recall=0.953, ef_search=64, curve=curve)
    ops.apply(kubectl, ns, ops.knn_index(name, base))
    ops.build_and_serve(kubectl, ns, name, version, operator, built)
    status = ops.status_of(kubectl, ns, name)
    assert [p["efSearch"] for p in status["builds"][-1]["recallCurve"]] == [10, 16, 32, 64]
    assert (status["servingEfSearch"], status["recall"]) == (64, 0.953)

    low = ops.merge(base, {"hnsw": {"efSearch": 16}})
    assert ops.expected_version(low) == version
    ops.apply(kubectl, ns, ops.knn_index(name, low))

    def refused() -> dict[str, Any] | None:
        c = ops.condition(ops.get(kubectl, "knn", name, ns), "ServingSpecAccepted")
        return dict(c) if c is not None and c["status"] == "False" else None

    accepted = ops.wait_for("ServingSpecAccepted=False", refused, diagnostics=operator.log_tail)
    assert accepted["reason"] == "EfSearchBelowMinRecall"
    assert accepted["message"] == (
        f"efSearch 16 has a recorded recall of 0.7150 for version {version}, below "
        "build.validation.minRecall 0.9; efSearch 64 reaches 0.9530"
    )
    ops.wait_for(
        "Event EfSearchRefused",
        lambda: ("Warning", "EfSearchRefused") in ops.event_reasons(kubectl, ns, name),
        diagnostics=operator.log_tail,
    )
    status = ops.status_of(kubectl, ns, name)
    assert status["phase"] == "Serving" and status["stableVersion"] == version
    assert ops.condition({"status": status}, "Ready")["status"] == "True"  # type: ignore[index]
    assert status["servingEfSearch"] == 64
    stable = status["stableRevision"]
    assert status["message"].endswith(f"; revision {stable} keeps serving at efSearch 64")
    assert ops.serving_deployments(kubectl, ns, name, version) == [f"{name}-{stable}"]
    dep = ops.get(kubectl, "deployment", f"{name}-{stable}", ns)
    assert dep is not None
    assert _arg(dep["spec"]["template"]["spec"]["containers"][0]["command"], "--ef-search") == "64"
    table = kubectl.run("get", "knn", name, "-n", ns).stdout
    assert re.search(rf"{name}\s+Serving\s+{stable}\s+0\.953", table), table


def test_an_autoscaled_stable_keeps_the_count_its_autoscaler_sets(
    kubectl: Kubectl, namespace: str, start_operator: ops.OperatorStarter
) -> None:
    """No kube-controller-manager runs in this tier: `kubectl scale` stands in for the
    HorizontalPodAutoscaler, writing the same scale subresource it writes."""
    operator = start_operator()
    ns, name = namespace, "products"
    auto = {"serving": {"replicas": 2, "autoscaling": {"minReplicas": 2, "maxReplicas": 6}}}
    version = ops.expected_version(auto)
    ops.apply(kubectl, ns, ops.knn_index(name, auto))
    ops.build_and_serve(kubectl, ns, name, version, operator)
    [dep_name] = ops.serving_deployments(kubectl, ns, name, version)
    hpa = ops.wait_for(
        "the HorizontalPodAutoscaler",
        lambda: ops.get(kubectl, "horizontalpodautoscaler", name, ns),
        diagnostics=operator.log_tail,
    )
    assert hpa["spec"]["scaleTargetRef"]["name"] == dep_name
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)

    # The operator stopped sending the count: it must not fall back to the default 1,
    # which is what server-side apply does to a field whose only owner drops it.
    ops.wait_reconciles(operator, 3)
    shown = kubectl.json("-n", ns, "get", "deployment", dep_name, "--show-managed-fields")
    assert shown["spec"]["replicas"] == 2
    owners = {
        m["manager"]
        for m in shown["metadata"]["managedFields"]
        if "f:replicas" in (m.get("fieldsV1") or {}).get("f:spec", {})
    }
    assert owners == {"knn-operator-handover"}, owners

    kubectl.run("-n", ns, "scale", f"deployment/{dep_name}", "--replicas=5")
    ops.make_available(kubectl, ns, dep_name)
    ops.wait_reconciles(operator, 3)
    dep = ops.get(kubectl, "deployment", dep_name, ns)
    assert dep is not None and dep["spec"]["replicas"] == 5, "the operator took it back"
    status = ops.status_of(kubectl, ns, name)
    assert status["phase"] == "Serving"

    # Off again: the operator owns the count (the spec's) and deletes the autoscaler.
    ops.apply(kubectl, ns, ops.knn_index(name, {"serving": {"replicas": 3}}))
    ops.wait_for(
        "the spec's 3 replicas and no autoscaler",
        lambda: (
            (d := ops.get(kubectl, "deployment", dep_name, ns)) is not None
            and d["spec"]["replicas"] == 3
            and ops.get(kubectl, "horizontalpodautoscaler", name, ns) is None
        ),
        diagnostics=operator.log_tail,
    )
