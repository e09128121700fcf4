"""`promtool test rules` cases for every alert of the chart: series that make it fire
and series that keep it silent, derived from the settings the rules were rendered
with (thresholds, windows, for), so a setting that does not reach a rule fails.

Series and label names come from the contracts (through knn_operator.monitoring.series),
as the rules' own do; expected label sets are written out here, so a rule that loses or
renames a label fails. Time runs in minutes from 0 at a 1m interval; series are long
enough for every window and `for` of the settings plus a margin.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from knn_contracts import metrics as serving
from knn_contracts import rollout as names
from knn_operator.monitoring import series as s

Labels = dict[str, str]
Settings = Mapping[str, Mapping[str, Any]]

KIND: Final = {s.KIND: s.KNN_INDEX_KIND}
REV: Final = {
    serving.LABEL_NAMESPACE: "shop",
    serving.LABEL_INDEX: "products",
    serving.LABEL_VERSION: "v1a2b3c4d-0f0f0",
}
OTHER_REV: Final = {**REV, serving.LABEL_VERSION: "v9e8d7c6b-1e1e1"}
MODEL_REV: Final = {
    serving.LABEL_NAMESPACE: "shop",
    serving.LABEL_MODEL: "segments",
    serving.LABEL_VERSION: "v5a6b7c8d-2d2d2",
}
TARGET: Final = {"job": "shop/serving", "instance": "10.0.0.7:8080"}
LIVE: Final = {serving.LABEL_SOURCE: serving.SOURCE_LIVE}
PROBE: Final = {serving.LABEL_SOURCE: serving.SOURCE_PROBE}


def minutes(duration: str) -> int:
    """A Prometheus duration (as the chart's schema allows) in whole minutes, rounded up."""
    unit = {"ms": 1 / 60_000, "s": 1 / 60, "m": 1, "h": 60, "d": 1440, "w": 10080, "y": 525600}
    parts = re.findall(r"([0-9]+)(ms|s|m|h|d|w|y)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return math.ceil(sum(int(n) * unit[u] for n, u in parts))


def sel(metric: str, *labelsets: Mapping[str, str]) -> str:
    merged = {k: v for ls in labelsets for k, v in ls.items()}
    inner = ",".join(f'{k}="{v}"' for k, v in merged.items())
    return f"{metric}{{{inner}}}"


@dataclass(frozen=True)
class Case:
    alert: str
    title: str  # what the case shows
    series: list[tuple[str, str]]  # (series, promtool values notation)
    at: int  # eval time, minutes
    fires: list[Labels] = field(default_factory=list)  # empty: silent
    # Where the breach starts at minute 0: still pending (silent) this minute, which
    # shows `for` reached the rule.
    pending_at: int | None = None


@dataclass(frozen=True)
class Ctx:
    settings: Settings
    jobs: Mapping[str, str]
    horizon: int  # samples per series

    def get(self, key: str, name: str) -> Any:
        return self.settings[key][name]

    def m(self, key: str, name: str) -> int:
        return minutes(str(self.settings[key][name]))

    def const(self, value: float) -> str:
        return f"{value:g}x{self.horizon}"

    def ramp(self, per_minute: float, start: float = 0) -> str:
        return f"{start:g}+{per_minute!r}x{self.horizon}"


def _rolled_back(c: Ctx) -> list[Case]:
    a, w, f = "KnnRolloutRolledBack", c.m("rolledBack", "window"), c.m("rolledBack", "for")
    rolled = sel(s.ROLLOUTS, KIND, {s.OUTCOME: names.OUTCOME_ROLLED_BACK})
    promoted = sel(s.ROLLOUTS, KIND, {s.OUTCOME: names.OUTCOME_PROMOTED})
    phase = sel(s.OBJECTS, KIND, {s.PHASE: names.PHASE_ROLLED_BACK})
    serving_phase = sel(s.OBJECTS, KIND, {s.PHASE: names.PHASE_SERVING})
    step = 10  # the rollback happens at minute `step`
    counted = f"0x{step} 1x{c.horizon - step}"
    return [
        Case(
            a,
            "a rollback counted while the phase already moved on",
            [(rolled, counted), (phase, c.const(0)), (serving_phase, c.const(1))],
            step + f + 1,
            [KIND],
        ),
        Case(
            a,
            "the first rollback after a start (counter born at 1): the phase shows it",
            [(phase, c.const(1)), (serving_phase, c.const(0))],
            f + 2,
            [KIND],
        ),
        Case(
            a,
            "healthy: promotions only, and a rollback older than the window",
            [
                (rolled, counted),
                (promoted, c.ramp(0.2)),
                (phase, c.const(0)),
                (serving_phase, c.const(1)),
            ],
            step + w + f + 2,
        ),
    ]


def _recall(c: Ctx) -> list[Case]:
    a, t, f = "KnnRecallBelowTarget", float(c.get("recall", "threshold")), c.m("recall", "for")
    k = {serving.LABEL_K: "10"}
    low = min(t - 0.02, t * 0.9)
    return [
        Case(
            a,
            "one revision below target",
            [
                (sel(s.RECALL, REV, k, TARGET), c.const(low)),
                (sel(s.RECALL, OTHER_REV, k), c.const(1)),
            ],
            f + 2,
            [{**REV, **k}],
            pending_at=f - 1 if f >= 1 else None,
        ),
        Case(
            a,
            "healthy: every revision at or above target",
            [
                (sel(s.RECALL, REV, k, TARGET), c.const(t)),
                (sel(s.RECALL, OTHER_REV, k), c.const(1)),
            ],
            f + 2,
        ),
    ]


def _live_recall(c: Ctx) -> list[Case]:
    key, a = "liveRecall", "KnnLiveRecallBelowTarget"
    t, w, f = float(c.get(key, "threshold")), c.m(key, "window"), c.m(key, "for")
    expected = sel(s.LIVE_EXPECTED, REV, TARGET)
    found = sel(s.LIVE_FOUND, REV, TARGET)
    at = w + f + 2
    return [
        Case(
            a,
            "live recall below target",
            [(expected, c.ramp(100)), (found, c.ramp(100 * t * 0.9))],
            at,
            [REV],
        ),
        Case(
            a,
            "healthy: live recall above target",
            [(expected, c.ramp(100)), (found, c.ramp(100 * min(1.0, t + (1 - t) / 2)))],
            at,
        ),
        Case(
            a,
            "healthy: nothing sampled (0/0) is no data, not recall 0",
            [(expected, c.const(0)), (found, c.const(0))],
            at,
        ),
    ]


def _buckets(
    c: Ctx, source: Mapping[str, str], above: float, per_minute: float
) -> list[tuple[str, str]]:
    """Cumulative buckets of a histogram whose observations all lie just above `above`
    seconds (in the first bucket whose lower bound is at least `above`)."""
    bounds = [*serving.QUERY_DURATION_BUCKETS, math.inf]
    out = []
    for le in bounds:
        text = "+Inf" if le == math.inf else f"{le:g}"
        count = per_minute if le > above else 0.0
        out.append((sel(s.DURATION_BUCKET, REV, TARGET, source, {"le": text}), c.ramp(count)))
    return out


def _latency(c: Ctx) -> list[Case]:
    key, a = "latency", "KnnLatencyP95AboveTarget"
    t, w, f = float(c.get(key, "threshold")) / 1000, c.m(key, "window"), c.m(key, "for")
    bounds = serving.QUERY_DURATION_BUCKETS
    # Slow: every query in the bucket that starts at or above the target, so p95 > target.
    slow = next(b for b in bounds if b >= t)
    # Fast: every query in the bucket that ends at or below the target, so p95 <= target.
    fast_top = max(b for b in bounds if b <= t)
    fast = max((b for b in bounds if b < fast_top), default=0.0)
    at = w + f + 2
    return [
        Case(a, "live p95 above target", _buckets(c, LIVE, slow, 60), at, [REV]),
        Case(
            a,
            "healthy: live p95 below target though the probe replay is slow",
            [*_buckets(c, LIVE, fast, 60), *_buckets(c, PROBE, slow, 60)],
            at,
        ),
    ]


def _error_rate(c: Ctx) -> list[Case]:
    key, a = "errorRate", "KnnErrorRateAboveTarget"
    t, w, f = float(c.get(key, "threshold")), c.m(key, "window"), c.m(key, "for")
    code = serving.LABEL_CODE

    def traffic(bad_share: float, refused: float) -> list[tuple[str, str]]:
        ok = 100.0
        bad = ok * bad_share / (1 - bad_share)
        return [
            (sel(s.REQUESTS, REV, TARGET, {code: "200"}), c.ramp(ok)),
            (sel(s.REQUESTS, REV, TARGET, {code: "500"}), c.ramp(bad)),
            (sel(s.REQUESTS, REV, TARGET, {code: "422"}), c.ramp(refused)),
        ]

    at = w + f + 2
    high = t + (1 - t) / 2
    return [
        Case(a, "5xx above target", traffic(high, 0), at, [REV]),
        Case(a, "healthy: 5xx below target, however many 4xx", traffic(t / 2, 500), at),
    ]


def _build_failed(c: Ctx) -> list[Case]:
    a, f = "KnnBuildFailed", c.m("buildFailed", "for")
    failed = sel(s.OBJECTS, KIND, {s.PHASE: names.PHASE_FAILED})
    ok = sel(s.OBJECTS, KIND, {s.PHASE: names.PHASE_SERVING})
    return [
        Case(
            a,
            "an object in phase Failed",
            [(failed, c.const(1)), (ok, c.const(2))],
            f + 2,
            [KIND],
            f - 1 if f >= 1 else None,
        ),
        Case(a, "healthy: none Failed", [(failed, c.const(0)), (ok, c.const(3))], f + 2),
    ]


def _operator_down(c: Ctx) -> list[Case]:
    a, f, job = "KnnOperatorDown", c.m("operatorDown", "for"), c.jobs["operator"]
    target = {"job": job, "instance": "10.0.0.3:8081"}
    unrelated = sel("up", {"job": "something-else", "instance": "10.0.0.9:80"})
    return [
        Case(
            a,
            "the target is down",
            [(sel("up", target), c.const(0))],
            f + 2,
            [target],
            f - 1 if f >= 1 else None,
        ),
        Case(a, "no target at all", [(unrelated, c.const(1))], f + 2, [{"job": job}]),
        Case(a, "healthy: the target is up", [(sel("up", target), c.const(1))], f + 2),
    ]


def _not_reconciling(c: Ctx) -> list[Case]:
    key, a = "notReconciling", "KnnOperatorNotReconciling"
    w, f = c.m(key, "window"), c.m(key, "for")
    objects = sel(s.OBJECTS, KIND, {s.PHASE: names.PHASE_SERVING})
    reconciles = sel(s.RECONCILES, KIND)
    at = w + f + 2
    return [
        Case(
            a,
            "objects, no reconcile",
            [(objects, c.const(2)), (reconciles, c.const(40))],
            at,
            [KIND],
        ),
        Case(a, "objects, never reconciled", [(objects, c.const(2))], at, [KIND]),
        Case(
            a, "healthy: reconciles going on", [(objects, c.const(2)), (reconciles, c.ramp(4))], at
        ),
        Case(
            a,
            "healthy: nothing to reconcile",
            [(objects, c.const(0)), (reconciles, c.const(40))],
            at,
        ),
    ]


def _reconcile_errors(c: Ctx) -> list[Case]:
    key, a = "reconcileErrors", "KnnOperatorReconcileErrors"
    t, w, f = float(c.get(key, "threshold")), c.m(key, "window"), c.m(key, "for")
    reconciles, errors = sel(s.RECONCILES, KIND), sel(s.RECONCILE_ERRORS, KIND)
    at = w + f + 2
    high = min(1.0, t + (1 - t) / 2)
    return [
        Case(
            a,
            "errors above target",
            [(reconciles, c.ramp(10)), (errors, c.ramp(10 * high))],
            at,
            [KIND],
        ),
        Case(
            a,
            "healthy: errors below target",
            [(reconciles, c.ramp(10)), (errors, c.ramp(10 * t / 2))],
            at,
        ),
    ]


def _serving_no_metrics(c: Ctx) -> list[Case]:
    a, f, job = (
        "KnnServingRevisionWithoutMetrics",
        c.m("servingNoMetrics", "for"),
        c.jobs["serving"],
    )
    up_a = {"job": job, "instance": "10.0.0.7:8080"}
    up_b = {"job": job, "instance": "10.0.0.8:8080"}
    info = {"metric": "cosine", "kind": "KnnIndex"}
    loaded_a = (sel(s.INDEX_INFO, REV, up_a, info), c.const(1))
    return [
        Case(a, "a serving target down", [(sel("up", up_a), c.const(0))], f + 2, [up_a]),
        Case(
            a,
            "a serving target up without a loaded index",
            [(sel("up", up_a), c.const(1)), loaded_a, (sel("up", up_b), c.const(1))],
            f + 2,
            [up_b],
        ),
        Case(
            a, "healthy: up and serving an index", [(sel("up", up_a), c.const(1)), loaded_a], f + 2
        ),
    ]


def _analysis_no_data(c: Ctx) -> list[Case]:
    key, a = "analysisNoData", "KnnAnalysisWithoutData"
    t, w, f = float(c.get(key, "threshold")), c.m(key, "window"), c.m(key, "for")
    check = {s.CHECK: names.CHECK_RECALL}

    def measured(result: str) -> str:
        return sel(s.MEASUREMENTS, KIND, check, {s.RESULT: result})

    at = w + f + 2
    many, few = (t + 2) / w, (t / 2) / w  # per minute: above and below threshold per window
    return [
        Case(
            a,
            "inconclusive measurements",
            [(measured(names.RESULT_INCONCLUSIVE), c.ramp(many))],
            at,
            [{**KIND, **check}],
        ),
        Case(
            a,
            "errors (Prometheus unreachable)",
            [(measured(names.RESULT_ERROR), c.ramp(many))],
            at,
            [{**KIND, **check}],
        ),
        Case(
            a,
            "healthy: a few inconclusive among many successful",
            [
                (measured(names.RESULT_INCONCLUSIVE), c.ramp(few)),
                (measured(names.RESULT_SUCCESSFUL), c.ramp(30)),
            ],
            at,
        ),
    ]


def _cluster_drift(c: Ctx) -> list[Case]:
    a, t, f = (
        "KnnClusterDriftAboveThreshold",
        float(c.get("clusterDrift", "threshold")),
        c.m("clusterDrift", "for"),
    )
    pod_b = {**TARGET, "instance": "10.0.0.8:8080"}
    return [
        Case(
            a,
            "one pod of a model revision drifts above threshold",
            [
                (sel(s.DRIFT_PSI, MODEL_REV, TARGET), c.const(t * 2)),
                (sel(s.DRIFT_PSI, MODEL_REV, pod_b), c.const(t / 2)),
            ],
            f + 2,
            [MODEL_REV],
            pending_at=f - 1 if f >= 1 else None,
        ),
        Case(
            a,
            "healthy: drift at or below threshold",
            [(sel(s.DRIFT_PSI, MODEL_REV, TARGET), c.const(t))],
            f + 2,
        ),
    ]


BUILDERS: Final[tuple[Callable[[Ctx], list[Case]], ...]] = (
    _rolled_back,
    _recall,
    _live_recall,
    _latency,
    _error_rate,
    _build_failed,
    _operator_down,
    _not_reconciling,
    _reconcile_errors,
    _serving_no_metrics,
    _analysis_no_data,
    _cluster_drift,
)


def horizon(settings: Settings) -> int:
    """Samples per series: every window plus every `for`, plus a margin."""
    longest = sum(
        max(minutes(str(v[name])) for v in settings.values() if name in v)
        for name in ("window", "for")
    )
    return longest + 30


def cases(settings: Settings, jobs: Mapping[str, str]) -> list[Case]:
    c = Ctx(settings, jobs, horizon(settings))
    return [case for build in BUILDERS for case in build(c)]


_LABEL_REF: Final = re.compile(r"\{\{ \$labels\.([A-Za-z_][A-Za-z0-9_]*) \}\}")


def _expand(template: str, labels: Mapping[str, str]) -> str:
    return _LABEL_REF.sub(lambda m: labels.get(m.group(1), ""), template)


def promtool_tests(
    rule_file: str, rules: Mapping[str, Mapping[str, Any]], all_cases: list[Case]
) -> dict[str, Any]:
    """A `promtool test rules` document; `rules` maps alert names to their rendered
    rules (for the severity and the annotations each firing alert must carry)."""
    tests = []
    for case in all_cases:
        rule = rules[case.alert]
        expected = [
            {
                "exp_labels": {**labels, "severity": rule["labels"]["severity"]},
                "exp_annotations": {
                    k: _expand(v, labels) for k, v in rule.get("annotations", {}).items()
                },
            }
            for labels in case.fires
        ]
        checks = [{"eval_time": f"{case.at}m", "alertname": case.alert, "exp_alerts": expected}]
        if case.pending_at is not None:
            checks.insert(
                0, {"eval_time": f"{case.pending_at}m", "alertname": case.alert, "exp_alerts": []}
            )
        tests.append(
            {
                "name": f"{case.alert}: {case.title}",
                "interval": "1m",
                "input_series": [{"series": sr, "values": v} for sr, v in case.series],
                "alert_rule_test": checks,
            }
        )
    return {"rule_files": [rule_file], "evaluation_interval": "1m", "tests": tests}
