"""ClusterModel on the real API server: the CRD refuses bad specs with a message
naming the field, and the operator (with the chart's RBAC) trains, serves and
replaces a k-means model through the same reconciler as a KnnIndex.

The test plays the kubelet and the Job/Deployment controllers (operator_support).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from knn_contracts.artifact import BuildSummary
from knn_devtools.kubectl import Kubectl
from knn_operator.models.clustermodel import ClusterModelSpec
from knn_operator.versioning import kmeans_version_of

if TYPE_CHECKING:
    from tests.controlplane import operator_support as ops
else:
    import operator_support as ops

pytestmark = pytest.mark.controlplane

Spec = dict[str, Any]

VALID: Spec = {
    "source": {"uri": "s3://vectors/customers/emb.npy", "format": "npy", "dimension": 16},
    "kmeans": {"clusters": 8, "nInit": 4, "maxIter": 200, "seed": 7},
    "build": {
        "validation": {
            "probePoints": 300,
            "minSilhouette": 0.2,
            "minClusterFraction": 0.1,
            "maxInertiaRegression": 0.1,
        },
        "timeoutSeconds": 1800,
    },
    "storage": {"uri": "s3://artifacts/segments"},
    "serving": {"replicas": 2},
    "rollout": {
        "steps": [{"setWeight": 50}, {"pause": {"duration": "60s"}}],
        "analysis": {
            "prometheus": {"address": "http://prometheus.monitoring:9090"},
            "thresholds": {
                "p95LatencyMs": 50,
                "maxProbeInertia": 4.0,
                "maxInertiaRatio": 1.1,
                "minProbeSilhouette": 0.3,
            },
        },
    },
}


def _merged(patch: Spec) -> Callable[[Spec], None]:
    def apply(spec: Spec) -> None:
        spec.update(ops.merge(spec, patch))

    return apply


def _set(value: Any, *path: str) -> Callable[[Spec], None]:
    def apply(spec: Spec) -> None:
        node = spec
        for key in path[:-1]:
            node = node[key]
        if value is None:
            del node[path[-1]]
        else:
            node[path[-1]] = value

    return apply


# (id, mutation of VALID, field path the error must name, words of the message)
INVALID: list[tuple[str, Callable[[Spec], None], str, str]] = [
    (
        "clusters-and-range",
        _merged({"kmeans": {"clustersRange": {"min": 2, "max": 9}}}),
        "spec.kmeans",
        "give exactly one of kmeans.clusters or kmeans.clustersRange",
    ),
    (
        "neither-clusters-nor-range",
        _set(None, "kmeans", "clusters"),
        "spec.kmeans",
        "give exactly one of kmeans.clusters or kmeans.clustersRange",
    ),
    (
        "range-upside-down",
        _set({"nInit": 4, "clustersRange": {"min": 9, "max": 3}}, "kmeans"),
        "spec.kmeans.clustersRange",
        "kmeans.clustersRange.min must not exceed max",
    ),
    ("clusters-1", _merged({"kmeans": {"clusters": 1}}), "spec.kmeans.clusters", "2"),
    ("n-init-0", _merged({"kmeans": {"nInit": 0}}), "spec.kmeans.nInit", "1"),
    (
        "silhouette-2",
        _merged({"build": {"validation": {"minSilhouette": 2}}}),
        "spec.build.validation.minSilhouette",
        "less than or equal to 1",
    ),
    (
        "ids-on-a-model",
        _merged({"source": {"ids": "s3://vectors/customers/ids.npy"}}),
        "spec.source",
        "source.ids and source.idColumn do not apply to a ClusterModel",
    ),
    (
        "recall-threshold-on-a-model",
        _merged({"rollout": {"analysis": {"thresholds": {"minRecall": 0.9}}}}),
        "spec.rollout.analysis.thresholds",
        "apply to a KnnIndex only",
    ),
    (
        "k-not-below-silhouette-sample",
        _merged({"kmeans": {"clusters": 50}, "build": {"validation": {"silhouetteSample": 50}}}),
        "spec.kmeans.clusters",
        "kmeans.clusters must be below build.validation.silhouetteSample",
    ),
    ("hnsw-on-a-model", _merged({"hnsw": {"m": 16}}), "spec", 'unknown field "spec.hnsw"'),
]


@pytest.fixture(scope="module")
def crd_namespace(kubectl: Kubectl, knn_crds: list[str]) -> Iterator[str]:
    assert "clustermodels.knn.dev" in knn_crds
    ns = ops.make_namespace(kubectl, "clm-validation")
    yield ns
    ops.clean_namespace(kubectl, ns)
    kubectl.run("delete", "namespace", ns, "--wait=false", check=False)


def cluster_model(name: str, spec: Spec) -> Spec:
    return {
        "apiVersion": "knn.dev/v1alpha1",
        "kind": "ClusterModel",
        "metadata": {"name": name},
        "spec": spec,
    }


def _apply(kubectl: Kubectl, ns: str, obj: Spec) -> tuple[int, str]:
    result = kubectl.run("apply", "-n", ns, "-f", "-", stdin=json.dumps(obj), check=False)
    return result.returncode, result.stderr


def test_the_valid_spec_is_accepted_and_defaulted_as_the_models_say(
    kubectl: Kubectl, crd_namespace: str
) -> None:
    code, stderr = _apply(kubectl, crd_namespace, cluster_model("valid", VALID))
    assert code == 0, stderr
    stored = ops.get(kubectl, "clm", "valid", crd_namespace)
    assert stored is not None
    expected = ClusterModelSpec.model_validate(VALID).model_dump(
        by_alias=True, exclude_none=True, mode="json"
    )
    assert stored["spec"] == expected


@pytest.mark.parametrize(
    ("mutate", "field", "words"),
    [pytest.param(m, f, w, id=i) for i, m, f, w in INVALID],
)
def test_invalid_cluster_model_is_refused_naming_the_field(
    kubectl: Kubectl,
    crd_namespace: str,
    mutate: Callable[[Spec], None],
    field: str,
    words: str,
) -> None:
    spec = copy.deepcopy(VALID)
    mutate(spec)
    code, stderr = _apply(kubectl, crd_namespace, cluster_model("invalid", spec))
    assert code != 0, f"accepted: {json.dumps(spec)}"
    assert field in stderr, f"the error does not name {field}: {stderr}"
    assert words in stderr, stderr
    assert ops.get(kubectl, "clm", "invalid", crd_namespace) is None


@pytest.mark.parametrize(
    "threshold", [{"maxProbeInertia": 3.0}, {"maxInertiaRatio": 1.1}, {"minProbeSilhouette": 0.2}]
)
def test_an_index_refuses_the_models_thresholds(
    kubectl: Kubectl, crd_namespace: str, threshold: Spec
) -> None:
    index = ops.knn_index(
        "inertia",
        {
            "rollout": {
                "analysis": {
                    "prometheus": {"address": "http://prom:9090"},
                    "thresholds": threshold,
                }
            }
        },
    )
    code, stderr = _apply(kubectl, crd_namespace, index)
    assert code != 0
    assert "spec.rollout.analysis.thresholds" in stderr, stderr
    assert (
        "maxProbeInertia, maxInertiaRatio and minProbeSilhouette apply to a ClusterModel only"
        in stderr
    ), stderr


# -- the operator's story -----------------------------------------------------------

STORY: Spec = {
    "source": {"uri": "s3://vectors/customers/emb.npy", "dimension": 16},
    "kmeans": {"clusters": 4},
    "build": {"validation": {"maxInertiaRegression": 0.1}},
    "storage": {"uri": "s3://artifacts/segments"},
    "serving": {"replicas": 2},
}


def trained(version: str, clusters: int, silhouette: float) -> BuildSummary:
    """The line `knn-build --kind kmeans` writes to /dev/termination-log."""
    return BuildSummary(
        outcome="Succeeded",
        kind="kmeans",
        version=version,
        vectors=20_000,
        dimension=16,
        clusters=clusters,
        inertia=4321.5,
        silhouette=silhouette,
        build_seconds=3.25,
        artifact=f"s3://artifacts/segments/{version}",
        sha256="0123456789abcdef" * 4,
    )


def _status(kubectl: Kubectl, ns: str, name: str) -> Spec:
    return ops.status_of(kubectl, ns, name, "clm")


def _status_when(
    kubectl: Kubectl, ns: str, name: str, ok: Callable[[Spec], bool]
) -> Callable[[], Spec | None]:
    """A probe for ops.wait_for: the status once `ok` holds for it."""

    def probe() -> Spec | None:
        status = _status(kubectl, ns, name)
        return status if ok(status) else None

    return probe


def _serving_deployment(kubectl: Kubectl, ns: str, name: str, version: str) -> Spec | None:
    selector = f"knn.dev/model={name},knn.dev/version={version},knn.dev/component=serving"
    found = ops.items(kubectl, "deployments", ns, selector)
    return found[0] if len(found) == 1 else None


def _command(obj: Spec) -> list[str]:
    return list(obj["spec"]["template"]["spec"]["containers"][0]["command"])


def _flag(command: list[str], flag: str) -> str | None:
    return command[command.index(flag) + 1] if flag in command else None


def _clm_events(kubectl: Kubectl, ns: str, name: str) -> set[str]:
    return {e["reason"] for e in ops.events(kubectl, ns, name, "ClusterModel")}


def _train_and_serve(
    kubectl: Kubectl,
    ns: str,
    name: str,
    spec: Spec,
    operator: ops.OperatorProcess,
    silhouette: float,
) -> tuple[str, list[str], Spec]:
    """Waits for the version's training Job, completes it, makes its Deployment
    available; returns the version, the Job's command and the Deployment."""
    version = kmeans_version_of(ClusterModelSpec.model_validate(spec))
    job = ops.wait_job(kubectl, ns, name, version, operator)
    clusters = spec["kmeans"]["clusters"]
    ops.complete_build(
        kubectl, ns, f"{name}-build-{version}", trained(version, clusters, silhouette)
    )
    dep = ops.wait_for(
        f"the serving Deployment of {name} {version}",
        lambda: _serving_deployment(kubectl, ns, name, version),
        diagnostics=operator.log_tail,
    )
    ops.make_available(kubectl, ns, dep["metadata"]["name"])
    return version, _command(job), dep


def test_a_cluster_model_is_trained_served_and_replaced(
    kubectl: Kubectl, namespace: str, start_operator: ops.OperatorStarter
) -> None:
    operator = start_operator()
    ns, name = namespace, "segments"
    kubectl.apply_manifest(json.dumps(cluster_model(name, STORY)), "-n", ns)

    # -- first version: trained by knn-build --kind kmeans, served by --model-name ----
    building = ops.wait_for(
        "the ClusterModel Building",
        _status_when(kubectl, ns, name, lambda s: s.get("phase") == "Building"),
        diagnostics=operator.log_tail,
    )
    assert building["builds"][0]["outcome"] == "Building"
    v1, job1, dep1 = _train_and_serve(kubectl, ns, name, STORY, operator, silhouette=0.71)
    assert job1[:3] == ["knn-build", "--kind", "kmeans"]
    assert _flag(job1, "--clusters") == "4" and _flag(job1, "--version") == v1
    assert "--previous" not in job1  # nothing served before it
    serve = _command(dep1)
    assert serve[0] == "knn-serve" and _flag(serve, "--model-name") == name
    assert _flag(serve, "--artifact") == f"s3://artifacts/segments/{v1}"
    assert dep1["metadata"]["ownerReferences"][0]["kind"] == "ClusterModel"
    serving = ops.wait_for(
        "the ClusterModel Serving",
        _status_when(kubectl, ns, name, lambda s: s.get("phase") == "Serving"),
        diagnostics=operator.log_tail,
    )
    assert serving["stableVersion"] == v1
    assert (serving["clusters"], serving["silhouette"], serving["inertia"]) == (4, 0.71, 4321.5)
    ready = ops.condition({"status": serving}, "Ready")
    assert ready is not None and ready["status"] == "True"
    # Clients reach the model through its Service (the replica router's).
    service = ops.get(kubectl, "service", name, ns)
    assert service is not None and service["spec"]["selector"]["knn.dev/model"] == name

    # What `kubectl get clm` prints: the printer columns of the CRD.
    table = kubectl.run("get", "clm", name, "-n", ns).stdout.splitlines()
    assert table[0].split() == [
        "NAME", "PHASE", "STABLE", "CANARY", "WEIGHT", "K", "SILHOUETTE", "DRIFT", "AGE",
    ]  # fmt: skip
    row = table[1].split()
    assert row[:3] == [name, "Serving", serving["stableRevision"]]
    assert row[3:5] == ["4", "0.71"], table

    # -- a retrained version: gated against what serves, then promoted -------------
    story2 = ops.merge(STORY, {"kmeans": {"clusters": 5}})
    kubectl.apply_manifest(json.dumps(cluster_model(name, story2)), "-n", ns)
    v2, job2, _ = _train_and_serve(kubectl, ns, name, story2, operator, silhouette=0.64)
    assert v2 != v1
    assert _flag(job2, "--previous") == f"s3://artifacts/segments/{v1}"
    assert _flag(job2, "--max-inertia-regression") == "0.1"
    promoted = ops.wait_for(
        f"version {v2} stable",
        _status_when(kubectl, ns, name, lambda s: s.get("stableVersion") == v2),
        diagnostics=operator.log_tail,
    )
    assert promoted["phase"] == "Serving" and promoted["clusters"] == 5
    states = {r["version"]: r["state"] for r in promoted["revisions"]}
    assert states[v2] == "Stable" and states[v1] in ("Warm", "Retired"), states
    ops.wait_for(
        "the ClusterModel's Events",
        lambda: {"BuildStarted", "BuildSucceeded"} <= _clm_events(kubectl, ns, name),
    )
