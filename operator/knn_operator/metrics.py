"""The operator's own Prometheus metrics."""

from __future__ import annotations

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

# --- rollout analysis (appended: the names live in knn_contracts.rollout) ---------------------
from knn_contracts import rollout as _rollout  # noqa: E402

# One increment per check per run. Labels stay bounded (built-in check names plus at
# most 10 custom ones, four results), so no object names.
ANALYSIS_MEASUREMENTS = Counter(
    _rollout.METRIC_MEASUREMENTS,
    "Analysis measurements by check and result (Successful, Inconclusive, Error, Failed).",
    ("kind", _rollout.LABEL_CHECK, _rollout.LABEL_RESULT),
)
