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
    job_name, dep_name = f"{name}-build-{version}", f"{name}-{version}"

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
        "--ef-search": "80",
        "--probe-queries": "200",
        "--k": "20",
        "--min-recall": "0.9",
        "--version": version,
        "--out": "s3://artifacts/products",
    }
    assert {flag: _arg(command, flag) for flag in expected_args} == expected_args

    ops.wait_for(
        "phase Building",
        lambda: (
            (ops.get(kubectl, "knn", name, ns) or {}).get("status", {}).get("phase") == "Building"
        ),
        diagnostics=operator.log_tail,
    )
    ops.wait_for(
        "Event BuildStarted",
        lambda: ("Normal", "BuildStarted") in ops.event_reasons(kubectl, ns, name),
    )
    assert ops.get(kubectl, "deployment", dep_name, ns) is None, "served before it was built"

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

    dep = ops.wait_for(
        f"Deployment {dep_name}",
        lambda: ops.get(kubectl, "deployment", dep_name, ns),
        diagnostics=operator.log_tail,
    )
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
    assert svc["spec"]["selector"]["knn.dev/version"] == version
    assert svc["spec"]["selector"] == template["metadata"]["labels"]

    status = ops.wait_for(
        "phase Progressing",
        lambda: (
            s
            if (s := (ops.get(kubectl, "knn", name, ns) or {}).get("status", {})).get("phase")
            == "Progressing"
            else None
        ),
    )
    assert ops.condition({"status": status}, "Ready")["status"] == "False"  # type: ignore[index]
    assert ops.get(kubectl, "service", name, ns) is None, "stable Service before availability"

    # -- the Deployment becomes available ------------------------------------------------
    ops.make_available(kubectl, ns, dep_name)
    ops.wait_for(
        "phase Serving",
        lambda: (
            (ops.get(kubectl, "knn", name, ns) or {}).get("status", {}).get("phase") == "Serving"
        ),
        diagnostics=operator.log_tail,
    )
    kubectl.run(
        "wait", "--for=condition=Ready", f"knn/{name}", "-n", ns, "--timeout=60s", timeout=70
    )
    stable = ops.wait_for(f"Service {name}", lambda: ops.get(kubectl, "service", name, ns))
    assert stable["spec"]["selector"]["knn.dev/version"] == version
    assert stable["spec"]["selector"]["knn.dev/component"] == "serving"
    final = ops.get(kubectl, "knn", name, ns)
    assert final is not None
    assert final["status"]["stableVersion"] == version
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
    assert row.split()[:4] == [name, "Serving", version, "0.9731"], table
    described = kubectl.run("describe", "knn", name, "-n", ns).stdout
    events_section = described.split("Events:", 1)[1]
    for reason in ("BuildStarted", "BuildSucceeded", "Promoted"):
        assert re.search(rf"Normal\s+{reason}\s", events_section), described
    assert "knn-operator" in events_section, "Events should come from knn-operator"
    print(f"\n$ kubectl get knn -n {ns}\n{table}")
    print(f"$ kubectl describe knn {name} -n {ns}\n{described}")
    print(json.dumps(final["status"]["builds"], indent=2))
