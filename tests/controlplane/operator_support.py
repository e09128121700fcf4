"""Running the real operator against the test control plane, and playing the kubelet.

The operator runs as a subprocess (`python -m knn_operator`,
knn_devtools.knnoperator.OperatorProcess, shared with `make bench --only operator`)
with a kubeconfig whose only credential is a ServiceAccount token bound to the chart's RBAC
(rbac/clusterrole.yaml or rbac/role.yaml), exactly as it would in a cluster.

No kubelet, scheduler or Job/Deployment controller runs, so the tests stand in
for them through the status subresources, with the admin kubectl:

* :func:`complete_build` / :func:`fail_build` create the builder Pod a Job
  controller would create (from the Job's template, so it passes the namespace's
  restricted Pod Security profile), give it the termination message the real
  `knn-build` writes (one JSON line of `BuildSummary`), and mark the Job
  Complete or Failed the way the Job controller does (Kubernetes 1.36 validates
  the sequence: SuccessCriteriaMet before Complete, FailureTarget before Failed).
* :func:`make_available` reports a Deployment's replicas as available.

Import it as the other tests do (pytest puts this directory on sys.path, mypy
resolves from the repository root)::

    if TYPE_CHECKING:
        from tests.controlplane import operator_support as ops
    else:
        import operator_support as ops
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import http.client
import json
import re
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final, TypeVar

from knn_contracts.artifact import BuildSummary

# Re-exported: the tests use them as ops.OperatorProcess, ops.CRD_FILE, ...
from knn_devtools.knnoperator import CLUSTER_ROLE_FILE as CLUSTER_ROLE_FILE
from knn_devtools.knnoperator import CRD_FILE as CRD_FILE
from knn_devtools.knnoperator import CRD_FILES as CRD_FILES
from knn_devtools.knnoperator import ROLE_FILE as ROLE_FILE
from knn_devtools.knnoperator import ROLE_NAME as ROLE_NAME
from knn_devtools.knnoperator import OperatorProcess as OperatorProcess
from knn_devtools.knnoperator import PeakRss as PeakRss
from knn_devtools.kubectl import Kubectl

# Small, so that the level-based resync is exercised within a test's time.
DEFAULT_RESYNC_SECONDS: Final = 3.0

T = TypeVar("T")
Obj = dict[str, Any]


# -- waiting -------------------------------------------------------------------------


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    *,
    timeout: float = 30.0,
    interval: float = 0.2,
    diagnostics: Callable[[], str] | None = None,
) -> T:
    """Polls ``probe`` until it returns something truthy, and returns that.

    On timeout fails with ``what``, the last value seen and ``diagnostics()``
    (e.g. the operator's log tail), so a red test says what it waited for.
    """
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            extra = f"\n{diagnostics()}" if diagnostics is not None else ""
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}{extra}"
            )
        time.sleep(interval)


# -- the operator process ------------------------------------------------------------


# What the `start_operator` fixture (conftest.py) gives a test.
OperatorStarter = Callable[..., OperatorProcess]


# -- objects -------------------------------------------------------------------------


def merge(base: Mapping[str, Any], patch: Mapping[str, Any]) -> Obj:
    """Recursive dict merge (a JSON merge patch without deletion): patch wins."""
    out: Obj = copy.deepcopy(dict(base))
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


MINIMAL_SPEC: Final[Obj] = {
    "source": {"uri": "s3://vectors/products/emb.npy", "dimension": 384},
    "storage": {"uri": "s3://artifacts/products"},
}


def knn_index(name: str, spec: Mapping[str, Any] | None = None, **meta: Any) -> Obj:
    """A KnnIndex manifest: the minimal spec merged with ``spec``."""
    return {
        "apiVersion": "knn.dev/v1alpha1",
        "kind": "KnnIndex",
        "metadata": {"name": name, **meta},
        "spec": merge(MINIMAL_SPEC, spec or {}),
    }


def apply(kubectl: Kubectl, namespace: str, *objects: Mapping[str, Any]) -> str:
    """`kubectl apply -f -` of one or more objects (a multi-document stream), as a user does."""
    stream = "\n---\n".join(json.dumps(o) for o in objects)
    return kubectl.run("apply", "-n", namespace, "-f", "-", stdin=stream, timeout=600).stdout


def get(kubectl: Kubectl, kind: str, name: str, namespace: str) -> Obj | None:
    result = kubectl.run("get", kind, name, "-n", namespace, "-o", "json", check=False)
    if result.returncode != 0:
        if "NotFound" in result.stderr:
            return None
        raise AssertionError(f"kubectl get {kind} {name}: {result.stderr}")
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def items(kubectl: Kubectl, kind: str, namespace: str, selector: str | None = None) -> list[Obj]:
    args = ["get", kind, "-n", namespace]
    if selector:
        args += ["-l", selector]
    return list(kubectl.json(*args)["items"])


def condition(obj: Mapping[str, Any] | None, type_: str) -> Mapping[str, Any] | None:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c  # type: ignore[no-any-return]
    return None


def events(kubectl: Kubectl, namespace: str, name: str, kind: str = "KnnIndex") -> list[Obj]:
    """Events whose involved object is the ``kind`` (KnnIndex, ClusterModel) ``name``."""
    return [
        e
        for e in items(kubectl, "events", namespace)
        if e["involvedObject"].get("kind") == kind and e["involvedObject"]["name"] == name
    ]


def event_reasons(kubectl: Kubectl, namespace: str, name: str) -> set[tuple[str, str]]:
    return {(e["type"], e["reason"]) for e in events(kubectl, namespace, name)}


def make_namespace(kubectl: Kubectl, prefix: str) -> str:
    """A namespace enforcing the restricted Pod Security profile, with its `default`
    ServiceAccount (no controller manager creates it)."""
    slug = re.sub(r"[^a-z0-9]+", "-", prefix.lower()).strip("-")[:40].strip("-")
    name = f"{slug}-{secrets.token_hex(3)}"
    kubectl.apply_manifest(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": name,
                    "labels": {
                        "pod-security.kubernetes.io/enforce": "restricted",
                        "pod-security.kubernetes.io/enforce-version": "latest",
                    },
                },
            }
        )
    )
    kubectl.apply_manifest(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": "default", "namespace": name},
            }
        )
    )
    return name


def clean_namespace(kubectl: Kubectl, namespace: str) -> None:
    """Deletes what the operator tests leave in a namespace, one collection at a time.

    Without a namespace controller a deleted namespace keeps its objects, which
    a cluster-wide operator of a later test would then watch and reconcile.
    """
    for path in (
        f"/apis/knn.dev/v1alpha1/namespaces/{namespace}/knnindexes",
        f"/apis/knn.dev/v1alpha1/namespaces/{namespace}/clustermodels",
        f"/apis/batch/v1/namespaces/{namespace}/jobs",
        f"/apis/apps/v1/namespaces/{namespace}/deployments",
        f"/api/v1/namespaces/{namespace}/services",
        f"/api/v1/namespaces/{namespace}/pods",
    ):
        kubectl.run("delete", "--raw", path, timeout=300, check=False)


def count(kubectl: Kubectl, path: str) -> int:
    """How many objects a collection holds, without transferring them: a list of
    one item reports how many remain (``metadata.remainingItemCount``)."""
    page = json.loads(kubectl.run("get", "--raw", f"{path}?limit=1").stdout)
    return len(page["items"]) + int(page["metadata"].get("remainingItemCount") or 0)


# -- playing the kubelet (and the Job and Deployment controllers) --------------------


def now_iso(offset_seconds: float = 0.0) -> str:
    t = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset_seconds)
    return t.isoformat(timespec="seconds").replace("+00:00", "Z")


def summary(
    version: str,
    *,
    outcome: str = "Succeeded",
    vectors: int = 100_000,
    recall: float = 0.987,
    build_seconds: float = 42.5,
    artifact: str | None = None,
    message: str = "",
    ef_search: int | None = None,
    curve: list[tuple[int, float, float]] | None = None,
) -> BuildSummary:
    """The line `knn-build` writes to /dev/termination-log."""
    if outcome == "Failed":
        return BuildSummary(outcome="Failed", version=version, message=message)
    return BuildSummary(
        outcome="Succeeded",
        version=version,
        vectors=vectors,
        dimension=384,
        recall=recall,
        build_seconds=build_seconds,
        artifact=artifact or f"s3://artifacts/products/{version}",
        sha256=("0123456789abcdef" * 4),
        ef_search=ef_search,
        curve=curve,
        message=message,
    )


def _patch_status(kubectl: Kubectl, kind: str, name: str, namespace: str, status: Obj) -> None:
    kubectl.run(
        "patch", kind, name, "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip


def builder_pod(job: Mapping[str, Any]) -> Obj:
    """The Pod a Job controller creates from ``job``: template labels and spec,
    controller reference to the Job."""
    meta = job["metadata"]
    template = job["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{meta['name']}-{secrets.token_hex(3)}",
            "namespace": meta["namespace"],
            "labels": dict(template["metadata"]["labels"]),
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": copy.deepcopy(template["spec"]),
    }


def run_builder_pod(kubectl: Kubectl, job: Mapping[str, Any], exit_code: int, message: str) -> Obj:
    """Creates the Job's Pod and reports its container terminated with ``message``."""
    pod = builder_pod(job)
    kubectl.run("create", "-f", "-", stdin=json.dumps(pod))
    container = pod["spec"]["containers"][0]
    started, finished = now_iso(-5), now_iso()
    _patch_status(
        kubectl,
        "pod",
        pod["metadata"]["name"],
        pod["metadata"]["namespace"],
        {
            "phase": "Succeeded" if exit_code == 0 else "Failed",
            "startTime": started,
            "containerStatuses": [
                {
                    "name": container["name"],
                    "image": container["image"],
                    "imageID": "",
                    "ready": False,
                    "started": False,
                    "restartCount": 0,
                    "state": {
                        "terminated": {
                            "exitCode": exit_code,
                            "reason": "Completed" if exit_code == 0 else "Error",
                            "message": message,
                            "startedAt": started,
                            "finishedAt": finished,
                        }
                    },
                }
            ],
        },
    )
    return pod


def _job(kubectl: Kubectl, namespace: str, name: str) -> Obj:
    job = get(kubectl, "job", name, namespace)
    assert job is not None, f"Job {namespace}/{name} does not exist"
    return job


def complete_build(kubectl: Kubectl, namespace: str, job_name: str, result: BuildSummary) -> Obj:
    """A builder Pod that succeeded with ``result`` as its termination message, and
    its Job Complete. Returns the Pod."""
    job = _job(kubectl, namespace, job_name)
    pod = run_builder_pod(kubectl, job, 0, result.model_dump_json(exclude_none=True))
    t0, t1 = now_iso(-6), now_iso()
    _patch_status(
        kubectl,
        "job",
        job_name,
        namespace,
        {
            "startTime": t0,
            "completionTime": t1,
            "active": 0,
            "succeeded": 1,
            "ready": 0,
            "terminating": 0,
            "uncountedTerminatedPods": {},
            "conditions": [
                _job_condition("SuccessCriteriaMet", "CompletionsReached", t1),
                _job_condition("Complete", "CompletionsReached", t1),
            ],
        },
    )
    return pod


def fail_build(kubectl: Kubectl, namespace: str, job_name: str, message: str) -> Obj:
    """A builder Pod that exited 1 with a Failed summary, and its Job Failed
    (BackoffLimitExceeded). Returns the Pod."""
    job = _job(kubectl, namespace, job_name)
    version = job["metadata"]["labels"]["knn.dev/version"]
    line = summary(version, outcome="Failed", message=message).model_dump_json(exclude_none=True)
    pod = run_builder_pod(kubectl, job, 1, line)
    t0, t1 = now_iso(-6), now_iso()
    _patch_status(
        kubectl,
        "job",
        job_name,
        namespace,
        {
            "startTime": t0,
            "active": 0,
            "failed": 1,
            "ready": 0,
            "terminating": 0,
            "uncountedTerminatedPods": {},
            "conditions": [
                _job_condition(
                    "FailureTarget", "BackoffLimitExceeded", t1, "Job has reached the backoff limit"
                ),
                _job_condition(
                    "Failed", "BackoffLimitExceeded", t1, "Job has reached the backoff limit"
                ),
            ],
        },
    )
    return pod


def _job_condition(type_: str, reason: str, at: str, message: str = "") -> Obj:
    return {
        "type": type_,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": at,
        "lastTransitionTime": at,
    }


def _report_replicas(
    kubectl: Kubectl, namespace: str, name: str, status: Callable[[int, str], Obj]
) -> Obj:
    """Patches Deployment ``name``'s status for its current generation and replicas:
    the counts every report shares, plus ``status(replicas, now)``. Returns the
    Deployment as it was read."""
    dep = get(kubectl, "deployment", name, namespace)
    assert dep is not None, f"Deployment {namespace}/{name} does not exist"
    replicas = int(dep["spec"].get("replicas", 1))
    common = {
        "observedGeneration": dep["metadata"]["generation"],
        "replicas": replicas,
        "updatedReplicas": replicas,
    }
    _patch_status(kubectl, "deployment", name, namespace, {**common, **status(replicas, now_iso())})
    return dep


def make_available(kubectl: Kubectl, namespace: str, name: str) -> Obj:
    """Reports every desired replica of Deployment ``name`` ready and available for
    its current generation (what the Deployment controller and kubelets report)."""
    return _report_replicas(
        kubectl,
        namespace,
        name,
        lambda replicas, at: {
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "conditions": [
                {
                    "type": "Available",
                    "status": "True",
                    "reason": "MinimumReplicasAvailable",
                    "message": "Deployment has minimum availability.",
                    "lastUpdateTime": at,
                    "lastTransitionTime": at,
                },
                {
                    "type": "Progressing",
                    "status": "True",
                    "reason": "NewReplicaSetAvailable",
                    "message": f'ReplicaSet "{name}" has successfully progressed.',
                    "lastUpdateTime": at,
                    "lastTransitionTime": at,
                },
            ],
        },
    )


@contextlib.contextmanager
def timed() -> Iterator[Callable[[], float]]:
    """``with timed() as elapsed: ...; elapsed()`` → seconds since entering."""
    began = time.monotonic()
    yield lambda: time.monotonic() - began


# -- whole steps of the story --------------------------------------------------------


def expected_version(spec: Mapping[str, Any]) -> str:
    """The version the operator derives from ``spec`` (merged onto the minimal spec)."""
    from knn_operator.models.knnindex import KnnIndexSpec
    from knn_operator.versioning import version_of

    return version_of(KnnIndexSpec.model_validate(merge(MINIMAL_SPEC, spec)))


def status_of(kubectl: Kubectl, namespace: str, name: str, resource: str = "knn") -> Obj:
    """The status of the KnnIndex (or, with resource "clm", the ClusterModel) ``name``."""
    return dict((get(kubectl, resource, name, namespace) or {}).get("status") or {})


def wait_phase(
    kubectl: Kubectl,
    namespace: str,
    name: str,
    phase: str,
    operator: OperatorProcess | None = None,
    *,
    timeout: float = 30.0,
) -> Obj:
    """Waits for status.phase; returns the status."""

    def reached() -> Obj | None:
        status = status_of(kubectl, namespace, name)
        return status if status.get("phase") == phase else None

    return wait_for(
        f"KnnIndex {namespace}/{name} to reach phase {phase}",
        reached,
        timeout=timeout,
        diagnostics=operator.log_tail if operator is not None else None,
    )


def wait_job(
    kubectl: Kubectl,
    namespace: str,
    name: str,
    version: str,
    operator: OperatorProcess | None = None,
    *,
    timeout: float = 30.0,
) -> Obj:
    job_name = f"{name}-build-{version}"
    return wait_for(
        f"Job {namespace}/{job_name}",
        lambda: get(kubectl, "job", job_name, namespace),
        timeout=timeout,
        diagnostics=operator.log_tail if operator is not None else None,
    )


def serving_deployments(kubectl: Kubectl, namespace: str, name: str, version: str) -> list[str]:
    """Names of the serving Deployments of `version` (one per revision of it)."""
    selector = f"knn.dev/index={name},knn.dev/version={version},knn.dev/component=serving"
    return sorted(d["metadata"]["name"] for d in items(kubectl, "deployments", namespace, selector))


def wait_serving_deployment(
    kubectl: Kubectl,
    namespace: str,
    name: str,
    version: str,
    operator: OperatorProcess | None = None,
) -> str:
    """Waits for the serving Deployment of `version` (a revision `<name>-<version>-<digest>`)
    and returns its name; with several revisions of it, the one status names as target."""

    def found() -> str | None:
        names = serving_deployments(kubectl, namespace, name, version)
        if len(names) <= 1:
            return names[0] if names else None
        target = status_of(kubectl, namespace, name).get("targetRevision")
        return f"{name}-{target}" if f"{name}-{target}" in names else None

    return wait_for(
        f"a serving Deployment of {namespace}/{name} version {version}",
        found,
        diagnostics=operator.log_tail if operator is not None else None,
    )


def build_and_serve(
    kubectl: Kubectl,
    namespace: str,
    name: str,
    version: str,
    operator: OperatorProcess | None = None,
    result: BuildSummary | None = None,
) -> None:
    """Waits for the version's Job, completes it (with `result`, default a plain
    summary), makes its Deployment available and waits for phase Serving with that
    version stable."""
    diagnostics = operator.log_tail if operator is not None else None
    wait_job(kubectl, namespace, name, version, operator)
    complete_build(kubectl, namespace, f"{name}-build-{version}", result or summary(version))
    dep = wait_serving_deployment(kubectl, namespace, name, version, operator)
    make_available(kubectl, namespace, dep)
    wait_for(
        f"KnnIndex {namespace}/{name} Serving version {version}",
        lambda: (
            (s := status_of(kubectl, namespace, name)).get("phase") == "Serving"
            and s.get("stableVersion") == version
        ),
        diagnostics=diagnostics,
    )


def reconcile_count(operator: OperatorProcess) -> int:
    """How many reconciles the operator has finished, of every kind (its own
    histogram's counts: a ClusterModel left by another test counts too)."""
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in operator.metrics().splitlines()
        if line.startswith("knn_operator_reconcile_duration_seconds_count{")
    )


def wait_reconciles(operator: OperatorProcess, more: int, *, timeout: float = 30.0) -> None:
    """Waits until the operator has finished ``more`` reconciles beyond those done now."""
    target = reconcile_count(operator) + more
    wait_for(
        f"{more} more reconciles",
        lambda: reconcile_count(operator) >= target,
        timeout=timeout,
        diagnostics=operator.log_tail,
    )


def https_ok(port: int, path: str) -> bool:
    """GET https://127.0.0.1:PORT/PATH answers 200 (a self-signed component's health;
    nothing but the request line is sent)."""
    import ssl

    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=2, context=tls)
    try:
        conn.request("GET", path)
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def make_unavailable(kubectl: Kubectl, namespace: str, name: str) -> None:
    """Reports every replica of Deployment ``name`` lost (nodes gone, pods crashing)."""
    _report_replicas(
        kubectl,
        namespace,
        name,
        lambda replicas, at: {
            "readyReplicas": 0,
            "availableReplicas": 0,
            "unavailableReplicas": replicas,
            "conditions": [
                {
                    "type": "Available",
                    "status": "False",
                    "reason": "MinimumReplicasUnavailable",
                    "message": "Deployment does not have minimum availability.",
                    "lastUpdateTime": at,
                    "lastTransitionTime": at,
                }
            ],
        },
    )
