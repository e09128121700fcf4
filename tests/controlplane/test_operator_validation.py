"""The KnnIndex CRD on the real API server: invalid specs are refused with a
message naming the field, and the server's defaults are the models' defaults.

No operator runs here: this is the API server's own validation of crds/.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from knn_devtools.kubectl import Kubectl
from knn_operator.models.knnindex import KnnIndexSpec

if TYPE_CHECKING:
    from tests.controlplane import operator_support as ops
else:
    import operator_support as ops

pytestmark = pytest.mark.controlplane

Spec = dict[str, Any]

# Valid, and using every part the invalid cases below touch, so that each case
# is exactly one mistake away from an accepted object.
VALID: Spec = {
    "source": {"uri": "s3://vectors/products/emb.npy", "format": "npy", "dimension": 384},
    "metric": "cosine",
    "hnsw": {"m": 16, "efConstruction": 200, "efSearch": 64},
    "build": {
        "validation": {"probeQueries": 500, "k": 10, "minRecall": 0.95},
        "resources": {"requests": {"cpu": "2", "memory": "4Gi"}},
        "timeoutSeconds": 3600,
    },
    "storage": {"uri": "s3://artifacts/products"},
    "serving": {
        "replicas": 2,
        "disruptionBudget": {"maxUnavailable": "25%"},
        "pod": {
            "nodeSelector": {"kubernetes.io/os": "linux", "pool": "search"},
            "tolerations": [
                {
                    "key": "dedicated",
                    "operator": "Equal",
                    "value": "search",
                    "effect": "NoSchedule",
                },
                {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
            ],
            "affinity": {
                "podAntiAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "weight": 100,
                            "podAffinityTerm": {
                                "topologyKey": "kubernetes.io/hostname",
                                "labelSelector": {"matchLabels": {"team": "search"}},
                            },
                        }
                    ]
                }
            },
            "imagePullSecrets": [{"name": "registry"}],
            "priorityClassName": "search-critical",
            "labels": {"team": "search", "example.com/cost-centre": "42"},
            "annotations": {"example.com/owner": "search@example.com"},
        },
    },
    "rollout": {
        "trafficRouter": {"gatewayAPI": {"httpRoute": "products"}},
        "steps": [{"setWeight": 10}, {"pause": {"duration": "60s"}}, {"setWeight": 50}],
        "analysis": {
            "prometheus": {"address": "http://prometheus.monitoring:9090"},
            "interval": "30s",
            "failureLimit": 1,
            "thresholds": {"p95LatencyMs": 50, "maxErrorRate": 0.01, "minRecall": 0.95},
            "metrics": [{"name": "qps", "query": "sum(rate(knn_requests_total[1m]))", "min": 1}],
        },
    },
    "history": {"limit": 3},
    "rebuild": {"schedule": "0 3 * * *", "onDrift": {"threshold": 1.5, "for": "10m"}},
}

PARQUET: Spec = {"uri": "s3://vectors/products/emb.parquet", "format": "parquet", "dimension": 8}


def changed(patch: Spec) -> Callable[[Spec], None]:
    def apply(spec: Spec) -> None:
        spec.update(ops.merge(spec, patch))

    return apply


def without(*path: str) -> Callable[[Spec], None]:
    def apply(spec: Spec) -> None:
        node = spec
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return apply


def setting(value: Any, *path: str) -> Callable[[Spec], None]:
    def apply(spec: Spec) -> None:
        node = spec
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return apply


# (id, mutation of VALID, field path the error must name, words of the message)
INVALID: list[tuple[str, Callable[[Spec], None], str, str]] = [
    ("missing-source", without("source"), "spec.source", "Required value"),
    ("missing-storage", without("storage"), "spec.storage", "Required value"),
    ("missing-dimension", without("source", "dimension"), "spec.source.dimension", "Required"),
    ("dimension-0", changed({"source": {"dimension": 0}}), "spec.source.dimension", "1"),
    ("dimension-string", changed({"source": {"dimension": "384"}}), "spec.source.dimension", ""),
    (
        "source-ftp",
        changed({"source": {"uri": "ftp://h/e.npy"}}),
        "spec.source.uri",
        "should match",
    ),
    (
        "storage-https",
        changed({"storage": {"uri": "https://h/a"}}),
        "spec.storage.uri",
        "should match",
    ),
    ("unknown-format", changed({"source": {"format": "csv"}}), "spec.source.format", "csv"),
    ("unknown-metric", changed({"metric": "hamming"}), "spec.metric", "Unsupported value"),
    ("m-1", changed({"hnsw": {"m": 1}}), "spec.hnsw.m", "greater than or equal to 2"),
    (
        "efSearch-below-k",
        changed({"hnsw": {"efSearch": 5}}),
        "spec.hnsw.efSearch",
        "hnsw.efSearch must be at least build.validation.k",
    ),
    (
        "minRecall-1.5",
        changed({"build": {"validation": {"minRecall": 1.5}}}),
        "spec.build.validation.minRecall",
        "less than or equal to 1",
    ),
    (
        "timeout-10s",
        changed({"build": {"timeoutSeconds": 10}}),
        "spec.build.timeoutSeconds",
        "60",
    ),
    (
        "bad-quantity",
        changed({"build": {"resources": {"requests": {"cpu": "lots"}}}}),
        "spec.build.resources.requests.cpu",
        "should match",
    ),
    (
        "two-traffic-routers",
        changed({"rollout": {"trafficRouter": {"istio": {"virtualService": "products"}}}}),
        "spec.rollout.trafficRouter",
        "choose exactly one traffic router",
    ),
    (
        "no-traffic-router",
        setting({}, "rollout", "trafficRouter"),
        "spec.rollout.trafficRouter",
        "choose exactly one traffic router",
    ),
    (
        "setWeight-150",
        setting([{"setWeight": 150}], "rollout", "steps"),
        "spec.rollout.steps[0].setWeight",
        "less than or equal to 100",
    ),
    (
        "falling-weights",
        setting([{"setWeight": 50}, {"setWeight": 10}], "rollout", "steps"),
        "spec.rollout.steps",
        "setWeight values must rise from step to step",
    ),
    (
        "setWeight-and-pause",
        setting([{"setWeight": 10, "pause": {}}], "rollout", "steps"),
        "spec.rollout.steps[0]",
        "each step is exactly one of setWeight or pause",
    ),
    (
        "bad-pause-duration",
        setting([{"pause": {"duration": "5 minutes"}}], "rollout", "steps"),
        "spec.rollout.steps[0].pause.duration",
        "should match",
    ),
    (
        "too-many-steps",
        setting([{"setWeight": 5 * i} for i in range(21)], "rollout", "steps"),
        "spec.rollout.steps",
        "must have at most 20 items",
    ),
    ("history-limit-0", changed({"history": {"limit": 0}}), "spec.history.limit", "1"),
    ("negative-replicas", changed({"serving": {"replicas": -1}}), "spec.serving.replicas", "0"),
    ("unknown-field", changed({"hnsw": {"efsearch": 64}}), "spec.hnsw.efsearch", "unknown field"),
    ("unknown-top-level", changed({"replicas": 3}), "spec.replicas", "unknown field"),
    (
        "parquet-column-on-npy",
        changed({"source": {"column": "embedding"}}),
        "spec.source",
        "source.column and source.idColumn apply only to parquet sources",
    ),
    (
        "ids-and-idColumn",
        setting({**PARQUET, "ids": "s3://vectors/ids.npy", "idColumn": "id"}, "source"),
        "spec.source.ids",
        "give ids either as source.ids or as source.idColumn, not both",
    ),
    (
        "bad-secret-name",
        changed({"source": {"secretName": "Creds_1"}}),
        "spec.source.secretName",
        "should match",
    ),
    (
        "custom-metric-without-bounds",
        setting([{"name": "qps", "query": "up"}], "rollout", "analysis", "metrics"),
        "spec.rollout.analysis.metrics[0]",
        "a custom metric needs min or max",
    ),
    (
        "custom-metric-min-above-max",
        setting(
            [{"name": "qps", "query": "up", "min": 5, "max": 1}], "rollout", "analysis", "metrics"
        ),
        "spec.rollout.analysis.metrics[0]",
        "min must not exceed max",
    ),
    (
        "bad-prometheus-address",
        setting({"address": "prometheus:9090"}, "rollout", "analysis", "prometheus"),
        "spec.rollout.analysis.prometheus.address",
        "should match",
    ),
    (
        "missing-prometheus",
        without("rollout", "analysis", "prometheus"),
        "spec.rollout.analysis.prometheus",
        "Required value",
    ),
    (
        "failureLimit-minus-1",
        setting(-1, "rollout", "analysis", "failureLimit"),
        "spec.rollout.analysis.failureLimit",
        "greater than or equal to 0",
    ),
    (
        "interval-without-unit",
        setting("30", "rollout", "analysis", "interval"),
        "spec.rollout.analysis.interval",
        "should match",
    ),
    (
        "onInconclusive-unknown",
        setting("Retry", "rollout", "analysis", "onInconclusive"),
        "spec.rollout.analysis.onInconclusive",
        "Unsupported value",
    ),
    (
        "analysis-without-checks",
        setting({"prometheus": {"address": "http://prom:9090"}}, "rollout", "analysis"),
        "spec.rollout.analysis",
        "analysis needs at least one threshold or custom metric",
    ),
    (
        "custom-metric-named-like-a-builtin",
        setting([{"name": "recall", "query": "up", "min": 1}], "rollout", "analysis", "metrics"),
        "spec.rollout.analysis.metrics[0].name",
        "a custom metric may not take a built-in check name",
    ),
    (
        "custom-metric-names-repeat",
        setting(
            [{"name": "qps", "query": "up", "min": 1}, {"name": "qps", "query": "up", "max": 1}],
            "rollout",
            "analysis",
            "metrics",
        ),
        "spec.rollout.analysis.metrics",
        "custom metric names must be unique",
    ),
    (
        "prometheus-timeout-not-below-interval",
        changed({"rollout": {"analysis": {"prometheus": {"timeout": "30s"}}}}),
        "spec.rollout.analysis.prometheus.timeout",
        "prometheus.timeout must be shorter than interval",
    ),
    (
        "prometheus-auth-bearer-and-basic",
        changed(
            {
                "rollout": {
                    "analysis": {
                        "prometheus": {
                            "auth": {
                                "secretName": "prom",
                                "bearerTokenKey": "t",
                                "usernameKey": "u",
                                "passwordKey": "p",
                            }
                        }
                    }
                }
            }
        ),
        "spec.rollout.analysis.prometheus.auth",
        "give bearerTokenKey, or usernameKey and passwordKey",
    ),
    (
        "ca-bundle-over-http",
        changed({"rollout": {"analysis": {"prometheus": {"caBundle": {"secretName": "ca"}}}}}),
        "spec.rollout.analysis.prometheus.caBundle",
        "caBundle needs an https:// address",
    ),
    (
        "pod-label-reserved",
        changed({"serving": {"pod": {"labels": {"knn.dev/revision": "x"}}}}),
        "spec.serving.pod.labels",
        "are the operator's",
    ),
    (
        "pod-label-value-invalid",
        changed({"serving": {"pod": {"labels": {"team": "search team"}}}}),
        "spec.serving.pod.labels",
        "valid Kubernetes label keys and values",
    ),
    (
        "pod-node-selector-key-invalid",
        changed({"build": {"pod": {"nodeSelector": {"bad key": "x"}}}}),
        "spec.build.pod.nodeSelector",
        "valid Kubernetes label keys and values",
    ),
    (
        "toleration-exists-with-value",
        setting(
            [{"key": "a", "operator": "Exists", "value": "b"}], "serving", "pod", "tolerations"
        ),
        "spec.serving.pod.tolerations[0]",
        "operator Exists takes no value",
    ),
    (
        "toleration-effect-unknown",
        setting([{"key": "a", "effect": "NoRun"}], "serving", "pod", "tolerations"),
        "spec.serving.pod.tolerations[0].effect",
        "supported values",
    ),
    (
        "pull-secret-name-invalid",
        setting([{"name": "Registry_Creds"}], "serving", "pod", "imagePullSecrets"),
        "spec.serving.pod.imagePullSecrets[0].name",
        "should match",
    ),
    (
        "affinity-unknown-kind",
        setting({"nodeAffinityy": {}}, "serving", "pod", "affinity"),
        "spec.serving.pod.affinity",
        "nodeAffinityy",
    ),
    (
        "disruption-budget-both",
        setting({"maxUnavailable": 1, "minAvailable": 1}, "serving", "disruptionBudget"),
        "spec.serving.disruptionBudget",
        "exactly one of maxUnavailable or minAvailable",
    ),
    (
        "disruption-budget-not-a-percent",
        setting({"minAvailable": "half"}, "serving", "disruptionBudget"),
        "spec.serving.disruptionBudget.minAvailable",
        "a count (0 or more) or a percent",
    ),
    (
        "p95-latency-0",
        setting({"p95LatencyMs": 0}, "rollout", "analysis", "thresholds"),
        "spec.rollout.analysis.thresholds.p95LatencyMs",
        "greater than 0",
    ),
    (
        "schedule-minute-61",
        setting("61 * * * *", "rebuild", "schedule"),
        "spec.rebuild.schedule",
        "must be a cron expression",
    ),
    (
        "schedule-three-fields",
        setting("0 3 *", "rebuild", "schedule"),
        "spec.rebuild.schedule",
        "minute hour day-of-month month day-of-week",
    ),
    (
        "on-drift-without-prometheus",
        without("rollout", "analysis"),
        "spec.rebuild.onDrift",
        "rebuild.onDrift needs a Prometheus",
    ),
    (
        "on-drift-threshold-0",
        setting(0, "rebuild", "onDrift", "threshold"),
        "spec.rebuild.onDrift.threshold",
        "greater than 0",
    ),
    (
        "on-drift-for-not-a-duration",
        setting("5 minutes", "rebuild", "onDrift", "for"),
        "spec.rebuild.onDrift.for",
        "should match",
    ),
]


@pytest.fixture(scope="module")
def crd_namespace(kubectl: Kubectl, knn_crds: list[str]) -> Iterator[str]:
    assert "knnindexes.knn.dev" in knn_crds
    ns = ops.make_namespace(kubectl, "knn-validation")
    yield ns
    ops.clean_namespace(kubectl, ns)
    kubectl.run("delete", "namespace", ns, "--wait=false", check=False)


def _apply(kubectl: Kubectl, ns: str, name: str, spec: Spec) -> tuple[int, str]:
    manifest = {
        "apiVersion": "knn.dev/v1alpha1",
        "kind": "KnnIndex",
        "metadata": {"name": name},
        "spec": spec,
    }
    result = kubectl.run("apply", "-n", ns, "-f", "-", stdin=json.dumps(manifest), check=False)
    return result.returncode, result.stderr


def test_the_valid_base_spec_is_accepted(kubectl: Kubectl, crd_namespace: str) -> None:
    code, stderr = _apply(kubectl, crd_namespace, "valid", VALID)
    assert code == 0, stderr
    KnnIndexSpec.model_validate(VALID)


def test_there_are_at_least_twenty_distinct_cases() -> None:
    assert len({case[0] for case in INVALID}) == len(INVALID) >= 20


@pytest.mark.parametrize(
    ("mutate", "field", "words"),
    [pytest.param(m, f, w, id=i) for i, m, f, w in INVALID],
)
def test_invalid_spec_is_refused_naming_the_field(
    kubectl: Kubectl,
    crd_namespace: str,
    mutate: Callable[[Spec], None],
    field: str,
    words: str,
) -> None:
    spec = copy.deepcopy(VALID)
    mutate(spec)
    code, stderr = _apply(kubectl, crd_namespace, "invalid", spec)
    assert code != 0, f"accepted: {json.dumps(spec)}"
    assert field in stderr, f"the error does not name {field}: {stderr}"
    assert words in stderr, stderr
    assert ops.get(kubectl, "knn", "invalid", crd_namespace) is None


# Partial specs: the server fills in nested defaults from the schema, pydantic from
# the models; the two must agree or the operator plans from a different object than
# the one users see.
PARTIAL: list[tuple[str, Spec]] = [
    ("minimal", {}),
    ("partial-hnsw", {"hnsw": {"m": 32}, "build": {"validation": {"k": 5}}}),
    (
        "analysis",
        {
            "rollout": {
                "analysis": {
                    "prometheus": {"address": "http://prom:9090"},
                    "thresholds": {"minRecall": 0.9},
                }
            }
        },
    ),
    (
        "rebuild",
        {
            "rebuild": {
                "schedule": "@daily",
                "onDrift": {"threshold": 0.25, "prometheus": {"address": "http://prom:9090"}},
            }
        },
    ),
    (
        "steps-and-serving",
        {
            "rollout": {"steps": [{"setWeight": 20}, {"pause": {}}]},
            "serving": {"replicas": 1},
            "build": {"resources": {"limits": {"memory": "2Gi"}}},
        },
    ),
]


@pytest.mark.parametrize("partial", [pytest.param(p, id=i) for i, p in PARTIAL])
def test_server_defaults_equal_the_models_defaults(
    kubectl: Kubectl, crd_namespace: str, partial: Spec
) -> None:
    given = ops.merge(ops.MINIMAL_SPEC, partial)
    name = "defaults"
    kubectl.run("delete", "knn", name, "-n", crd_namespace, "--ignore-not-found")
    code, stderr = _apply(kubectl, crd_namespace, name, given)
    assert code == 0, stderr
    stored = ops.get(kubectl, "knn", name, crd_namespace)
    assert stored is not None
    expected = KnnIndexSpec.model_validate(given).model_dump(
        by_alias=True, exclude_none=True, mode="json"
    )
    assert stored["spec"] == expected


def test_names_too_long_for_the_builder_job_are_refused(
    kubectl: Kubectl, crd_namespace: str
) -> None:
    """`<name>-build-<version>` must fit in the 63-character job-name label."""
    longest = "n" * 47
    code, stderr = _apply(kubectl, crd_namespace, longest, VALID)
    assert code == 0, stderr
    code, stderr = _apply(kubectl, crd_namespace, longest + "n", VALID)
    assert code != 0
    assert "metadata.name must be no more than 47 characters" in stderr, stderr
