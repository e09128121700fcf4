"""The operator's own Prometheus metrics."""

from __future__ import annotations

from knn_contracts import rollout as names
from prometheus_client import Counter, Gauge, Histogram

RECONCILE_DURATION = Histogram(
    "knn_operator_reconcile_duration_seconds",
    "Time to reconcile one object.",
    ("kind",),
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
RECONCILE_ERRORS = Counter(
    "knn_operator_reconcile_errors_total", "Reconciles that raised an error.", ("kind",)
)
OBJECTS = Gauge("knn_operator_objects", "Objects by phase.", ("kind", "phase"))

# One increment per check per run. Labels stay bounded (built-in check names plus at
# most 10 custom ones, four results), so no object names.
ANALYSIS_MEASUREMENTS = Counter(
    names.METRIC_MEASUREMENTS,
    "Analysis measurements by check and result (Successful, Inconclusive, Error, Failed).",
    ("kind", names.LABEL_CHECK, names.LABEL_RESULT),
)
# Per object: the canary's delivered share of traffic (0 with no rollout). Bounded
# by the number of objects, as kube-state-metrics' per-object series are.
CANARY_WEIGHT = Gauge(
    names.METRIC_CANARY_WEIGHT,
    "The canary's share of traffic in percent, as the router delivers it.",
    ("kind", "namespace", "name"),
)
ROLLOUTS = Counter(
    names.METRIC_ROLLOUTS,
    "Finished rollouts by outcome (Promoted, RolledBack, Aborted, Superseded).",
    ("kind", names.LABEL_OUTCOME),
)
REBUILD_TRIGGERS = Counter(
    names.METRIC_REBUILD_TRIGGERS,
    "Rebuilds started by spec.rebuild triggers, by reason (Schedule, Drift).",
    ("kind", names.LABEL_TRIGGER),
)
BREACH_TO_STABLE = Histogram(
    names.METRIC_BREACH_TO_STABLE,
    "From the analysis run that breached a limit to the canary serving no traffic.",
    ("kind",),
    buckets=(1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 45.0, 60.0, 90.0, 120.0, 300.0),
)
