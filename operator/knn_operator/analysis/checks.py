"""A spec's analysis → the checks of one run, for a canary revision and its stable one.

A check is one PromQL query expected to return one number, and its limits
(inclusive: value == limit passes). Built-in checks have fixed names
(knn_contracts.rollout.CHECK_*); custom metrics keep the user's name and query.
Relative checks need a stable revision and are left out without one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from knn_contracts import rollout as names

from ..models.knnindex import Analysis
from . import promql
from .promql import Revision
from .window import parse_duration, probe_window, promql_duration, rate_window


@dataclass(frozen=True)
class Check:
    name: str
    revision: str  # the version judged (the canary's)
    query: str
    min: float | None = None
    max: float | None = None
    unit: str = ""  # for messages only

    def limit(self) -> str:
        """The limits as a user reads them: '<= 50 ms', '>= 0.95', 'in [0.1, 0.9]'."""
        unit = f" {self.unit}" if self.unit else ""
        if self.min is not None and self.max is not None:
            return f"in [{self.min:g}, {self.max:g}]{unit}"
        if self.min is not None:
            return f">= {self.min:g}{unit}"
        if self.max is not None:
            return f"<= {self.max:g}{unit}"
        return "none"


@dataclass(frozen=True)
class Windows:
    rate: str  # range of rate() for live traffic and counters
    probe: str  # range for the probe replay's latency


def windows(analysis: Analysis, probe_interval_seconds: float) -> Windows:
    live = rate_window(parse_duration(analysis.interval), parse_duration(analysis.scrape_interval))
    probe = probe_window(live, timedelta(seconds=probe_interval_seconds))
    return Windows(promql_duration(live), promql_duration(probe))


def checks_for(
    analysis: Analysis, canary: Revision, stable: Revision | None, probe_interval_seconds: float
) -> list[Check]:
    """Every check of one run, built-in ones first, in a fixed order."""
    w = windows(analysis, probe_interval_seconds)
    t, low = analysis.thresholds, analysis.low_traffic_rps
    v = canary.version
    out: list[Check] = []
    if t.p95_latency_ms is not None:
        q = promql.latency_p95_ms(canary, w.rate, w.probe, low)
        out.append(Check(names.CHECK_LATENCY, v, q, max=t.p95_latency_ms, unit="ms"))
    if t.max_error_rate is not None:
        out.append(
            Check(
                names.CHECK_ERROR_RATE, v, promql.error_rate(canary, w.rate), max=t.max_error_rate
            )
        )
    if t.min_recall is not None:
        out.append(Check(names.CHECK_RECALL, v, promql.probe_recall(canary), min=t.min_recall))
    if t.min_live_recall is not None:
        q = promql.live_recall(canary, w.rate)
        out.append(Check(names.CHECK_LIVE_RECALL, v, q, min=t.min_live_recall))
    if stable is not None and t.max_latency_ratio is not None:
        q = promql.latency_ratio(canary, stable, w.rate, w.probe, low)
        out.append(Check(names.CHECK_LATENCY_RATIO, v, q, max=t.max_latency_ratio))
    if stable is not None and t.max_recall_drop is not None:
        q = promql.recall_drop(canary, stable)
        out.append(Check(names.CHECK_RECALL_DROP, v, q, max=t.max_recall_drop))
    if t.max_probe_inertia is not None:
        q = promql.probe_inertia(canary)
        out.append(Check(names.CHECK_PROBE_INERTIA, v, q, max=t.max_probe_inertia))
    if stable is not None and t.max_inertia_ratio is not None:
        q = promql.inertia_ratio(canary, stable)
        out.append(Check(names.CHECK_INERTIA_RATIO, v, q, max=t.max_inertia_ratio))
    if t.min_probe_silhouette is not None:
        q = promql.probe_silhouette(canary)
        out.append(Check(names.CHECK_PROBE_SILHOUETTE, v, q, min=t.min_probe_silhouette))
    out += [
        Check(m.name, v, promql.template(m.query, canary, stable), min=m.min, max=m.max)
        for m in analysis.metrics
    ]
    return out
