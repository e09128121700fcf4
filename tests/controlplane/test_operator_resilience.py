"""The operator resumes after SIGKILL, keeps namespaces apart, and runs with the
namespaced Role alone."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from knn_devtools.kubectl import Kubectl

if TYPE_CHECKING:
    from tests.controlplane import operator_support as ops
else:
    import operator_support as ops

pytestmark = pytest.mark.controlplane


def _count_events(kubectl: Kubectl, ns: str, name: str, reason: str) -> int:
    return sum(e.get("count", 1) for e in ops.events(kubectl, ns, name) if e["reason"] == reason)


def test_killed_operator_resumes_without_duplicates(
    kubectl: Kubectl, namespace: str, start_operator: ops.OperatorStarter
) -> None:
    operator = start_operator()
    ns, name = namespace, "products"
    version = ops.expected_version({})
    job_name = f"{name}-build-{version}"
    ops.apply(kubectl, ns, ops.knn_index(name))
    job = ops.wait_job(kubectl, ns, name, version, operator)
    ops.wait_phase(kubectl, ns, name, "Building", operator)

    # Killed with the Job running; the build finishes while no operator runs.
    operator.kill()
    ops.complete_build(kubectl, ns, job_name, ops.summary(version, recall=0.961))
    operator.start()

    dep_name = ops.wait_serving_deployment(kubectl, ns, name, version, operator)
    jobs = ops.items(kubectl, "jobs", ns, f"knn.dev/index={name}")
    assert [j["metadata"]["uid"] for j in jobs] == [job["metadata"]["uid"]], "Job recreated"
    status = ops.wait_phase(kubectl, ns, name, "Progressing", operator)
    [record] = status["builds"]
    assert record["outcome"] == "Succeeded" and record["recall"] == pytest.approx(0.961)

    # Killed again with the Deployment not yet available; it becomes available meanwhile.
    dep = ops.get(kubectl, "deployment", dep_name, ns)
    assert dep is not None
    operator.kill()
    ops.make_available(kubectl, ns, dep_name)
    operator.start()

    status = ops.wait_phase(kubectl, ns, name, "Serving", operator)
    assert status["stableVersion"] == version
    kubectl.run("wait", "--for=condition=Ready", f"knn/{name}", "-n", ns, "--timeout=30s")
    ops.wait_reconciles(operator, 2)
    assert len(ops.items(kubectl, "jobs", ns, f"knn.dev/index={name}")) == 1
    [dep_after] = ops.items(kubectl, "deployments", ns, f"knn.dev/index={name}")
    assert dep_after["metadata"]["uid"] == dep["metadata"]["uid"], "Deployment recreated"
    # Transitions are announced once, not once per operator start.
    assert _count_events(kubectl, ns, name, "BuildStarted") == 1
    assert _count_events(kubectl, ns, name, "BuildSucceeded") == 1
    assert _count_events(kubectl, ns, name, "Promoted") == 1


def test_same_name_in_two_namespaces_does_not_interfere(
    kubectl: Kubectl,
    namespace: str,
    extra_namespaces: list[str],
    start_operator: ops.OperatorStarter,
) -> None:
    operator = start_operator()
    a = namespace
    b = ops.make_namespace(kubectl, "other")
    extra_namespaces.append(b)
    name, version = "products", ops.expected_version({})
    ops.apply(kubectl, a, ops.knn_index(name))
    ops.apply(kubectl, b, ops.knn_index(name))
    job_a = ops.wait_job(kubectl, a, name, version, operator)
    job_b = ops.wait_job(kubectl, b, name, version, operator)
    index_a, index_b = ops.get(kubectl, "knn", name, a), ops.get(kubectl, "knn", name, b)
    assert index_a is not None and index_b is not None
    assert job_a["metadata"]["ownerReferences"][0]["uid"] == index_a["metadata"]["uid"]
    assert job_b["metadata"]["ownerReferences"][0]["uid"] == index_b["metadata"]["uid"]

    ops.build_and_serve(kubectl, a, name, version, operator)
    ops.wait_reconciles(operator, 2)
    status_b = ops.status_of(kubectl, b, name)
    assert status_b["phase"] == "Building", status_b
    assert [r["outcome"] for r in status_b["builds"]] == ["Building"]
    assert ops.items(kubectl, "deployments", b) == []
    assert ops.items(kubectl, "services", b) == []

    # Each namespace's build result lands in its own index only.
    ops.complete_build(kubectl, b, f"{name}-build-{version}", ops.summary(version, recall=0.9555))
    dep_b = ops.wait_serving_deployment(kubectl, b, name, version, operator)
    ops.make_available(kubectl, b, dep_b)
    status_b = ops.wait_phase(kubectl, b, name, "Serving", operator)
    status_a = ops.status_of(kubectl, a, name)
    assert status_b["recall"] == pytest.approx(0.9555)
    assert status_a["recall"] == pytest.approx(0.987)
    assert status_a["phase"] == "Serving"
    for ns in (a, b):
        [dep] = ops.items(kubectl, "deployments", ns)
        owner = ops.get(kubectl, "knn", name, ns)
        assert owner is not None
        assert dep["metadata"]["ownerReferences"][0]["uid"] == owner["metadata"]["uid"]


def test_namespaced_role_is_enough_and_confines_the_operator(
    kubectl: Kubectl,
    namespace: str,
    extra_namespaces: list[str],
    start_operator: ops.OperatorStarter,
) -> None:
    """rbac/role.yaml and `--namespace NS`: the operator reconciles NS, ignores the
    rest, and never hits a permission it was not granted."""
    operator = start_operator(watch=(namespace,), role_kind="Role")
    elsewhere = ops.make_namespace(kubectl, "elsewhere")
    extra_namespaces.append(elsewhere)
    name, version = "products", ops.expected_version({})
    ops.apply(kubectl, elsewhere, ops.knn_index(name))
    ops.apply(kubectl, namespace, ops.knn_index(name))

    ops.build_and_serve(kubectl, namespace, name, version, operator)
    ops.wait_for(
        "Event Promoted in the namespace",
        lambda: ("Normal", "Promoted") in ops.event_reasons(kubectl, namespace, name),
    )
    ops.wait_reconciles(operator, 2)
    assert ops.status_of(kubectl, elsewhere, name) == {}, "an unwatched namespace was touched"
    assert ops.items(kubectl, "jobs", elsewhere) == []
    log = operator.log_text()
    assert "forbidden" not in log.lower(), operator.log_tail(80)
    assert " ERROR " not in log, operator.log_tail(80)
