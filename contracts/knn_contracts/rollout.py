"""Rollout names shared by the operator, its chart and its readers: phases,
revision states, condition and Event reasons, measurement results, built-in
check names and the operator's own metric names. The names are the contract:
alert rules, Argo CD health checks, dashboards and kubectl-knn read them. The
KnnIndex model's Phase literal must list exactly PHASES.
"""

from typing import Final, Literal

# --- phases, revision states, rollout reasons -----------------------------------------------
PHASE_PENDING: Final = "Pending"
PHASE_BUILDING: Final = "Building"
PHASE_PROGRESSING: Final = "Progressing"  # a new version builds or a canary earns traffic
PHASE_SERVING: Final = "Serving"
PHASE_DEGRADED: Final = "Degraded"  # the stable revision has too few available replicas
PHASE_ROLLED_BACK: Final = "RolledBack"  # the last canary was aborted; stable serves
PHASE_FAILED: Final = "Failed"  # nothing serves and the target cannot
PHASES: Final = (
    PHASE_PENDING,
    PHASE_BUILDING,
    PHASE_PROGRESSING,
    PHASE_SERVING,
    PHASE_DEGRADED,
    PHASE_ROLLED_BACK,
    PHASE_FAILED,
)

# status.revisions[].state
REVISION_STABLE: Final = "Stable"
REVISION_CANARY: Final = "Canary"
REVISION_WARM: Final = "Warm"  # a replaced stable, kept up for scaleDownDelaySeconds
REVISION_ROLLED_BACK: Final = "RolledBack"
REVISION_SUPERSEDED: Final = "Superseded"  # a canary replaced by a newer spec mid-rollout
REVISION_RETIRED: Final = "Retired"  # scaled to zero

# Condition Progressing reasons
REASON_NEW_VERSION: Final = "NewVersion"  # building the target version
REASON_CANARY: Final = "Canary"  # the canary earns traffic step by step
REASON_PAUSED: Final = "Paused"  # at a pause step, or held by inconclusive analysis
REASON_STABLE: Final = "Stable"  # no rollout in progress
REASON_ROLLED_BACK: Final = "RolledBack"  # a canary was aborted; stable serves
REASON_BUILD_FAILED: Final = "BuildFailed"
# The target revision's Deployment stopped progressing (its pods cannot be scheduled or
# created: ProgressDeadlineExceeded, ReplicaFailure); also the Warning Event's reason.
REASON_REVISION_STALLED: Final = "RevisionStalled"

# Why a rollout was aborted (status.rolledBack.cause)
CAUSE_ANALYSIS: Final = "AnalysisFailed"
CAUSE_INCONCLUSIVE: Final = "AnalysisInconclusive"
CAUSE_USER: Final = "AbortedByUser"

# Event reasons
EVENT_ROLLOUT_STARTED: Final = "RolloutStarted"
EVENT_STEP: Final = "RolloutStep"
EVENT_PAUSED: Final = "RolloutPaused"
EVENT_PROMOTED: Final = "Promoted"
EVENT_ROLLED_BACK: Final = "RolledBack"
EVENT_SUPERSEDED: Final = "RolloutSuperseded"
EVENT_RETRY: Final = "RolloutRetry"
EVENT_ACTION_IGNORED: Final = "ActionIgnored"
EVENT_NO_STEPS: Final = "PromotedWithoutSteps"
EVENT_SCALED_DOWN: Final = "ScaledDown"
EVENT_ROUTER_UNAVAILABLE: Final = "TrafficRouterUnavailable"

# Retraining triggers (spec.rebuild): a new version built from the same inputs.
TRIGGER_SCHEDULE: Final = "Schedule"  # status.lastRebuild.reason
TRIGGER_DRIFT: Final = "Drift"
EVENT_SCHEDULED_REBUILD: Final = "ScheduledRebuild"  # Normal: the cron schedule fired
EVENT_DRIFT_REBUILD: Final = "DriftRebuild"  # Normal: drift held above its threshold for `for`
EVENT_DRIFT_DETECTED: Final = "DriftDetected"  # Warning: drift went above its threshold
EVENT_DRIFT_UNMEASURED: Final = "DriftUnmeasured"  # Warning: the drift query failed


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
# ClusterModel: the probe replay's mean squared distance to the centroids
# (knn_cluster_probe_inertia_mean), and canary / stable of it.
CHECK_PROBE_INERTIA: Final = "probe-inertia"
CHECK_INERTIA_RATIO: Final = "inertia-ratio"
# ClusterModel: silhouette of the probe points as served (knn_cluster_probe_silhouette).
CHECK_PROBE_SILHOUETTE: Final = "probe-silhouette"
BUILTIN_CHECKS: Final = (
    CHECK_LATENCY,
    CHECK_ERROR_RATE,
    CHECK_RECALL,
    CHECK_LIVE_RECALL,
    CHECK_LATENCY_RATIO,
    CHECK_RECALL_DROP,
    CHECK_PROBE_INERTIA,
    CHECK_INERTIA_RATIO,
    CHECK_PROBE_SILHOUETTE,
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
METRIC_REBUILD_TRIGGERS: Final = "knn_operator_rebuild_triggers"  # counter {kind, reason}
LABEL_TRIGGER: Final = "reason"  # TRIGGER_SCHEDULE | TRIGGER_DRIFT
LABEL_OUTCOME: Final = "outcome"
LABEL_CHECK: Final = "check"
LABEL_RESULT: Final = "result"
OUTCOME_PROMOTED: Final = "Promoted"
OUTCOME_ROLLED_BACK: Final = "RolledBack"
OUTCOME_ABORTED: Final = "Aborted"  # by the user (knn.dev/abort)
OUTCOME_SUPERSEDED: Final = "Superseded"  # a spec change replaced the canary
