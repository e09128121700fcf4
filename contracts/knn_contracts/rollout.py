"""Names of the rollout analysis shared by the operator, its chart and its readers.

Measurement results are written to status.analysis.lastMeasurements[].result;
condition reasons and Event reasons to status and Events; the operator's own
metric names are what the chart's alert rules and dashboards query. The names are
the contract: kubectl-knn, Argo CD health checks and alert rules read them.
"""

from typing import Final, Literal

# --- measurement results, best to worst (the severity order of the assessment) ----------------
RESULT_SUCCESSFUL: Final = "Successful"
RESULT_INCONCLUSIVE: Final = "Inconclusive"  # no data: no series, NaN or Inf
RESULT_ERROR: Final = "Error"  # Prometheus unreachable, timed out, or refused the query
RESULT_FAILED: Final = "Failed"  # a value outside its limit
MeasurementResult = Literal["Successful", "Inconclusive", "Error", "Failed"]
RESULTS: Final[tuple[MeasurementResult, ...]] = (
    RESULT_SUCCESSFUL,
    RESULT_INCONCLUSIVE,
    RESULT_ERROR,
    RESULT_FAILED,
)

# --- built-in check names (status.analysis.lastMeasurements[].check) ----------------------------
CHECK_LATENCY: Final = "latency-p95"  # milliseconds
CHECK_ERROR_RATE: Final = "error-rate"  # 5xx / all requests
CHECK_RECALL: Final = "recall"  # held-out probe replay (knn_recall_ratio)
CHECK_LIVE_RECALL: Final = "live-recall"  # sampled live queries checked exactly
CHECK_LATENCY_RATIO: Final = "latency-ratio"  # canary p95 / stable p95
CHECK_RECALL_DROP: Final = "recall-drop"  # stable recall - canary recall
BUILTIN_CHECKS: Final = (
    CHECK_LATENCY,
    CHECK_ERROR_RATE,
    CHECK_RECALL,
    CHECK_LIVE_RECALL,
    CHECK_LATENCY_RATIO,
    CHECK_RECALL_DROP,
)

# --- condition and Event reasons ----------------------------------------------------------------
REASON_ANALYSIS_PASSED: Final = "AnalysisPassed"  # the latest run was Successful
REASON_ANALYSIS_WAITING: Final = "AnalysisWaiting"  # no run yet, or the latest one did not pass
REASON_ANALYSIS_FAILED: Final = "AnalysisFailed"  # failures > failureLimit
REASON_ANALYSIS_INCONCLUSIVE: Final = "AnalysisInconclusive"  # inconclusive > inconclusiveLimit
REASON_ANALYSIS_ERRORS: Final = "AnalysisErrors"  # consecutive errors > consecutiveErrorLimit
REASON_PROMETHEUS_CREDENTIALS: Final = "PrometheusCredentialsInvalid"  # Secret or key missing
EVENT_MEASUREMENT_FAILED: Final = "MeasurementFailed"  # Warning, one per failed check

# --- the operator's own metrics (prometheus_client names; counters get _total) ------------------
METRIC_CANARY_WEIGHT: Final = "knn_operator_canary_weight"  # gauge {namespace, name}
METRIC_ROLLOUTS: Final = "knn_operator_rollouts"  # counter {kind, outcome}
METRIC_MEASUREMENTS: Final = "knn_operator_analysis_measurements"  # counter {kind, check, result}
METRIC_BREACH_TO_STABLE: Final = "knn_operator_breach_to_stable_seconds"  # histogram {kind}
LABEL_OUTCOME: Final = "outcome"
LABEL_CHECK: Final = "check"
LABEL_RESULT: Final = "result"
OUTCOME_PROMOTED: Final = "Promoted"
OUTCOME_ROLLED_BACK: Final = "RolledBack"
OUTCOME_ABORTED: Final = "Aborted"  # by the user (knn.dev/abort)
OUTCOME_SUPERSEDED: Final = "Superseded"  # a spec change replaced the canary
