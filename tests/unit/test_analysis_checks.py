"""The spec's analysis → the checks of a run."""

from __future__ import annotations

from typing import Any

import yaml
from knn_contracts import rollout as names
from knn_operator import crdgen
from knn_operator.analysis import promql
from knn_operator.analysis.checks import Check, checks_for, windows
from knn_operator.analysis.promql import Revision
from knn_operator.models.knnindex import Analysis

CANARY = Revision("shop", "products", "v2")
STABLE = Revision("shop", "products", "v1")


def analysis(**extra: Any) -> Analysis:
    return Analysis.model_validate({"prometheus": {"address": "http://prom:9090"}, **extra})


def test_windows_follow_interval_scrape_interval_and_probe_interval() -> None:
    a = analysis(interval="30s", scrapeInterval="15s")
    w = windows(a, probe_interval_seconds=60)
    assert (w.rate, w.probe) == ("60s", "120s")
    w = windows(analysis(interval="5m", scrapeInterval="30s"), probe_interval_seconds=60)
    assert (w.rate, w.probe) == ("300s", "300s")


def test_every_builtin_check_and_custom_metrics_in_order() -> None:
    a = analysis(
        interval="30s",
        scrapeInterval="5s",
        lowTrafficRps=2,
        thresholds={
            "p95LatencyMs": 50,
            "maxErrorRate": 0.01,
            "minRecall": 0.9,
            "minLiveRecall": 0.85,
            "maxLatencyRatio": 1.2,
            "maxRecallDrop": 0.02,
            "maxProbeInertia": 4.0,
            "maxInertiaRatio": 1.1,
            "minProbeSilhouette": 0.3,
        },
        metrics=[{"name": "qps", "query": "sum(rate(x[1m]))", "min": 1}],
    )
    checks = checks_for(a, CANARY, STABLE, probe_interval_seconds=60)
    assert [c.name for c in checks] == [*names.BUILTIN_CHECKS, "qps"]
    assert all(c.revision == "v2" for c in checks)
    by = {c.name: c for c in checks}
    assert by[names.CHECK_LATENCY] == Check(
        names.CHECK_LATENCY,
        "v2",
        promql.latency_p95_ms(CANARY, "30s", "120s", 2.0),
        max=50,
        unit="ms",
    )
    assert by[names.CHECK_ERROR_RATE].query == promql.error_rate(CANARY, "30s")
    assert (by[names.CHECK_RECALL].min, by[names.CHECK_RECALL].max) == (0.9, None)
    assert by[names.CHECK_LIVE_RECALL].query == promql.live_recall(CANARY, "30s")
    assert by[names.CHECK_LATENCY_RATIO].query == promql.latency_ratio(
        CANARY, STABLE, "30s", "120s", 2.0
    )
    assert by[names.CHECK_RECALL_DROP] == Check(
        names.CHECK_RECALL_DROP, "v2", promql.recall_drop(CANARY, STABLE), max=0.02
    )
    assert by["qps"] == Check("qps", "v2", "sum(rate(x[1m]))", min=1)


def test_relative_checks_need_a_stable_revision() -> None:
    a = analysis(thresholds={"minRecall": 0.9, "maxRecallDrop": 0.01, "maxLatencyRatio": 2})
    assert [c.name for c in checks_for(a, CANARY, None, 60)] == [names.CHECK_RECALL]


def test_limits_read_as_a_user_reads_them() -> None:
    assert Check("a", "v", "q", max=50, unit="ms").limit() == "<= 50 ms"
    assert Check("a", "v", "q", min=0.95).limit() == ">= 0.95"
    assert Check("a", "v", "q", min=0.1, max=0.9).limit() == "in [0.1, 0.9]"


def _props(node: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for name, child in node.get("properties", {}).items():
        out.append((f"{path}.{name}", child))
        out += _props(child, f"{path}.{name}")
        if "items" in child:
            out += _props(child["items"], f"{path}.{name}[]")
    return out


def test_every_analysis_field_is_explained_in_the_crd() -> None:
    """kubectl explain shows a description for every analysis spec and status field."""
    crd = yaml.safe_load(crdgen.render("knnindexes.yaml"))
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    spec = schema["spec"]["properties"]["rollout"]["properties"]["analysis"]
    status = schema["status"]["properties"]["analysis"]
    fields = _props(spec, "spec.rollout.analysis") + _props(status, "status.analysis")
    assert len(fields) > 40
    missing = [p for p, node in fields if not node.get("description")]
    assert missing == []


def test_every_spec_field_is_explained_in_the_crd() -> None:
    """`kubectl explain knn.spec...` has something to say about every field."""
    crd = yaml.safe_load(crdgen.render("knnindexes.yaml"))
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    fields = _props(spec, "spec")
    assert len(fields) > 80
    assert [p for p, node in fields if not node.get("description")] == []


def test_a_models_inertia_checks_select_its_series_by_the_model_label() -> None:
    canary = Revision("shop", "segments", "v2-abcde", "model")
    stable = Revision("shop", "segments", "v1-fghij", "model")
    a = analysis(thresholds={"maxProbeInertia": 4.0, "maxInertiaRatio": 1.1})
    by = {c.name: c for c in checks_for(a, canary, stable, probe_interval_seconds=60)}
    assert by[names.CHECK_PROBE_INERTIA] == Check(
        names.CHECK_PROBE_INERTIA,
        "v2-abcde",
        'avg(knn_cluster_probe_inertia_mean{namespace="shop",model="segments",version="v2-abcde"})',
        max=4.0,
    )
    ratio = by[names.CHECK_INERTIA_RATIO]
    stable_series = 'namespace="shop",model="segments",version="v1-fghij"'
    assert ratio.max == 1.1
    assert ratio.query.endswith(f"/ avg(knn_cluster_probe_inertia_mean{{{stable_series}}})")
    # Without a stable there is nothing to compare with.
    alone = checks_for(a, canary, None, probe_interval_seconds=60)
    assert [c.name for c in alone] == [names.CHECK_PROBE_INERTIA]


def test_a_models_silhouette_check_takes_the_worst_pod() -> None:
    canary = Revision("shop", "segments", "v2-abcde", "model")
    a = analysis(thresholds={"minProbeSilhouette": 0.4})
    [check] = checks_for(a, canary, None, probe_interval_seconds=60)
    assert check == Check(
        names.CHECK_PROBE_SILHOUETTE,
        "v2-abcde",
        'min(knn_cluster_probe_silhouette{namespace="shop",model="segments",version="v2-abcde"})',
        min=0.4,
    )
