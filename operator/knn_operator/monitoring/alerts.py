"""The alert rules, as data: one rule group built from the contract names. Pure.

Each alert has settings (threshold, window, for, severity) that the chart exposes
under `prometheusRule.alerts.<key>`. Rules are rendered with each setting as text
that a `render.Render` supplies: Helm expressions for the chart's file, or literal
values. Annotations name the series' labels through the render too, because in the
chart's file Prometheus' `{{ $labels.x }}` must survive Helm's `tpl`.

Targets are the chart's thresholds, not each KnnIndex's spec.rollout.analysis
thresholds: no metric exports a spec's targets, so a rule cannot compare against
them per index.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from knn_contracts import metrics as serving
from knn_contracts import rollout as names

from . import series as s
from .promql import REVISION_BY, by, q
from .render import Render

GROUP: Final = "knn-operator"
SETTINGS: Final = ("threshold", "window", "for", "severity")


@dataclass(frozen=True)
class Ctx:
    """What one alert's expression and annotations read: its own settings and the jobs."""

    render: Render
    key: str

    def __getitem__(self, name: str) -> str:
        return self.render.setting(self.key, name)

    def job(self, which: str) -> str:
        return self.render.job(which)


@dataclass(frozen=True)
class Alert:
    name: str
    key: str  # prometheusRule.alerts.<key>
    expr: Callable[[Ctx], str]
    summary: str  # str.format fields: series labels, or a setting as "setting_<name>"
    description: str
    defaults: Mapping[str, Any] = field(default_factory=dict)


# --- expressions --------------------------------------------------------------------------------


def _rolled_back(c: Ctx) -> str:
    # The counter catches a rollback that a new rollout followed at once (the phase
    # moved on before an evaluation saw it); the phase gauge catches the first
    # rollback after an operator start, which the counter misses (its series is born
    # at 1, and increase() needs an earlier sample).
    rolled = f"{s.ROLLOUTS}{{{s.OUTCOME}={q(names.OUTCOME_ROLLED_BACK)}}}"
    phase = f"{s.OBJECTS}{{{s.PHASE}={q(names.PHASE_ROLLED_BACK)}}}"
    return (
        f"sum {by(s.KIND)} (increase({rolled}[{c['window']}])) > 0\n"
        f"or\nsum {by(s.KIND)} ({phase}) > 0"
    )


def _cluster_drift(c: Ctx) -> str:
    # The gauge is already over the server's sliding window (--drift-window
    # assignments); the worst pod of a revision speaks for it.
    return f"max {by(*s.MODEL_REVISION)} ({s.DRIFT_PSI}) > {c['threshold']}"


def _recall(c: Ctx) -> str:
    return f"min {by(*s.REVISION, serving.LABEL_K)} ({s.RECALL}) < {c['threshold']}"


def _live_recall(c: Ctx) -> str:
    # No checked samples: 0/0 is NaN, which no comparison passes, so an idle revision
    # stays silent instead of reading as recall 0.
    w = c["window"]
    return (
        f"sum {REVISION_BY} (rate({s.LIVE_FOUND}[{w}]))\n"
        f"/\nsum {REVISION_BY} (rate({s.LIVE_EXPECTED}[{w}]))\n"
        f"< {c['threshold']}"
    )


_P95: Final = 0.95


def _latency(c: Ctx) -> str:
    # Live traffic only: the probe replay times the search alone (no HTTP), so it would
    # hide a slow server. The threshold is in ms, as the KnnIndex's p95LatencyMs.
    live = f"{serving.LABEL_SOURCE}!={q(serving.SOURCE_PROBE)}"
    buckets = f"{s.DURATION_BUCKET}{{{live}}}[{c['window']}]"
    return (
        f"1000 * histogram_quantile({_P95}, sum {by(*s.REVISION, 'le')} (rate({buckets})))\n"
        f"> {c['threshold']}"
    )


def _error_rate(c: Ctx) -> str:
    # 5xx only: a 4xx is a client's bad input, refused by a healthy server.
    w = c["window"]
    errors = f"{s.REQUESTS}{{{serving.LABEL_CODE}=~{q('5..')}}}"
    return (
        f"sum {REVISION_BY} (rate({errors}[{w}]))\n"
        f"/\nsum {REVISION_BY} (rate({s.REQUESTS}[{w}]))\n"
        f"> {c['threshold']}"
    )


def _build_failed(c: Ctx) -> str:
    return f"sum {by(s.KIND)} ({s.OBJECTS}{{{s.PHASE}={q(names.PHASE_FAILED)}}}) > 0"


def _operator_down(c: Ctx) -> str:
    # The job is spliced unquoted: in the chart it is a Helm action, whose own quotes
    # must stay as they are.
    up = f'up{{job="{c.job("operator")}"}}'
    return f"{up} == 0\nor\nabsent({up})"


def _not_reconciling(c: Ctx) -> str:
    # Every object is reconciled at least once per resync (30 s by default), so a
    # window with objects and no reconcile means the loop is stuck.
    return (
        f"sum {by(s.KIND)} ({s.OBJECTS}) > 0\n"
        f"unless on ({s.KIND})\n"
        f"sum {by(s.KIND)} (rate({s.RECONCILES}[{c['window']}])) > 0"
    )


def _reconcile_errors(c: Ctx) -> str:
    # The duration histogram counts every reconcile, failed ones included.
    w = c["window"]
    return (
        f"sum {by(s.KIND)} (rate({s.RECONCILE_ERRORS}[{w}]))\n"
        f"/\nsum {by(s.KIND)} (rate({s.RECONCILES}[{w}]))\n"
        f"> {c['threshold']}"
    )


def _serving_no_metrics(c: Ctx) -> str:
    # Servers set their own identity labels (honorLabels), `job` and `instance` are the
    # target's: a target that is up but exports no index info serves no loaded index.
    up = f'up{{job="{c.job("serving")}"}}'
    return f"{up} == 0\nor\n({up} == 1 unless on (job, instance) {s.INDEX_INFO})"


def _analysis_no_data(c: Ctx) -> str:
    results = "|".join((names.RESULT_INCONCLUSIVE, names.RESULT_ERROR))
    measured = f"{s.MEASUREMENTS}{{{s.RESULT}=~{q(results)}}}"
    return f"sum {by(s.KIND, s.CHECK)} (increase({measured}[{c['window']}])) > {c['threshold']}"


REVISION_TEXT: Final = "{index} revision {version} in {namespace}"

ALERTS: Final[tuple[Alert, ...]] = (
    Alert(
        "KnnRolloutRolledBack",
        "rolledBack",
        _rolled_back,
        "A {kind} rollout was rolled back",
        "A canary failed its analysis or was aborted, and all traffic went back to the "
        "stable revision. `kubectl get knn -A` shows the phase "
        f"{names.PHASE_ROLLED_BACK}; status.rolledBack says why.",
        {"window": "30m", "for": "0m", "severity": "warning"},
    ),
    Alert(
        "KnnRecallBelowTarget",
        "recall",
        _recall,
        f"Recall of {REVISION_TEXT} is below {{setting_threshold}}",
        "The held-out probe replay of this revision finds fewer true neighbours "
        "(recall@{k}) than the target: raise efSearch, or rebuild with a larger M or "
        "efConstruction.",
        {"threshold": 0.95, "for": "10m", "severity": "critical"},
    ),
    Alert(
        "KnnLiveRecallBelowTarget",
        "liveRecall",
        _live_recall,
        f"Live recall of {REVISION_TEXT} is below {{setting_threshold}}",
        "Sampled live queries, checked by exact search, find fewer true neighbours than "
        "the target: real traffic differs from the probe set, or efSearch is too low.",
        {"threshold": 0.9, "window": "15m", "for": "15m", "severity": "warning"},
    ),
    Alert(
        "KnnLatencyP95AboveTarget",
        "latency",
        _latency,
        f"p95 latency of {REVISION_TEXT} is above {{setting_threshold}} ms",
        "The 95th percentile of live query latency is above the target: scale the "
        "revision out, lower efSearch, or check the pods' CPU limits.",
        {"threshold": 50, "window": "5m", "for": "10m", "severity": "warning"},
    ),
    Alert(
        "KnnErrorRateAboveTarget",
        "errorRate",
        _error_rate,
        f"Error rate of {REVISION_TEXT} is above {{setting_threshold}}",
        "More than the target share of queries end in a 5xx (bad input is a 4xx and "
        "does not count): look at the serving pods' logs.",
        {"threshold": 0.01, "window": "5m", "for": "5m", "severity": "critical"},
    ),
    Alert(
        "KnnBuildFailed",
        "buildFailed",
        _build_failed,
        "A {kind} has nothing to serve: its build failed",
        f"At least one {{kind}} is in phase {names.PHASE_FAILED}: no revision serves and the "
        "target version's build failed (or its spec was refused). Its Built condition and "
        "Events say why. A failed rebuild while a stable revision serves is not shown in "
        "the operator's metrics: see the Built condition.",
        {"for": "1m", "severity": "warning"},
    ),
    Alert(
        "KnnOperatorDown",
        "operatorDown",
        _operator_down,
        "knn-operator is down or not scraped",
        "Prometheus has not scraped the operator ({job}): no canary is judged or rolled "
        "back while it is away (serving continues).",
        {"for": "5m", "severity": "critical"},
    ),
    Alert(
        "KnnOperatorNotReconciling",
        "notReconciling",
        _not_reconciling,
        "knn-operator has not reconciled any {kind} for {setting_window}",
        "Objects exist but no reconcile finished within the window, though each is "
        "reconciled at least once per resync: the operator is stuck (check its log and "
        "its access to the API server).",
        {"window": "10m", "for": "5m", "severity": "critical"},
    ),
    Alert(
        "KnnOperatorReconcileErrors",
        "reconcileErrors",
        _reconcile_errors,
        "More than {setting_threshold} of {kind} reconciles fail",
        "Reconciles raise errors (API refusals, permissions, conflicts); the operator "
        "retries with backoff. Its log names the objects.",
        {"threshold": 0.1, "window": "10m", "for": "15m", "severity": "warning"},
    ),
    Alert(
        "KnnServingRevisionWithoutMetrics",
        "servingNoMetrics",
        _serving_no_metrics,
        "Serving target {instance} exports no index metrics",
        "A serving pod's target is down, or up without a loaded index "
        f"({s.INDEX_INFO} missing): the rollout analysis sees no data for its revision "
        "and judges it Inconclusive, never a pass.",
        {"for": "10m", "severity": "warning"},
    ),
    Alert(
        "KnnAnalysisWithoutData",
        "analysisNoData",
        _analysis_no_data,
        "The {kind} {check} analysis finds no data",
        "More than {setting_threshold} {check} measurements in {setting_window} were "
        "Inconclusive or Error: Prometheus has no series for the canary, or cannot be "
        "reached. Rollouts pause or abort after inconclusiveLimit.",
        {"threshold": 3, "window": "10m", "for": "5m", "severity": "warning"},
    ),
    Alert(
        "KnnClusterDriftAboveThreshold",
        "clusterDrift",
        _cluster_drift,
        "Cluster drift of {model} revision {version} in {namespace} is above "
        "{setting_threshold} (PSI)",
        f"The live cluster distribution ({s.DRIFT_PSI}, over the server's last "
        "--drift-window assignments) has moved away from the training one: the data "
        "has shifted since the model was trained. Retrain it (a new version rolls out "
        "as a canary).",
        # 0.25: the usual reading of a PSI above which a population has shifted.
        {"threshold": 0.25, "for": "15m", "severity": "warning"},
    ),
)
PLACEHOLDERS: Final[tuple[str, ...]] = ()


class _Fields(dict[str, str]):
    """str.format fields: a setting as setting_<name>, anything else a series label."""

    def __init__(self, ctx: Ctx) -> None:
        super().__init__()
        self.ctx = ctx

    def __missing__(self, key: str) -> str:
        if key.startswith("setting_"):
            return self.ctx[key.removeprefix("setting_")]
        return self.ctx.render.label(key)


def rule(alert: Alert, render: Render) -> dict[str, Any]:
    ctx = Ctx(render, alert.key)
    fields = _Fields(ctx)
    return {
        "alert": alert.name,
        "expr": alert.expr(ctx),
        "for": ctx["for"],
        "labels": {"severity": ctx["severity"]},
        "annotations": {
            "summary": alert.summary.format_map(fields),
            "description": alert.description.format_map(fields),
        },
    }


def groups(render: Render) -> dict[str, Any]:
    """A Prometheus rule file's content (also a PrometheusRule's spec)."""
    return {"groups": [{"name": GROUP, "rules": [rule(a, render) for a in ALERTS]}]}


def defaults() -> dict[str, dict[str, Any]]:
    """prometheusRule.alerts as values.yaml sets it."""
    return {a.key: dict(a.defaults) for a in ALERTS}
