"""Rollout names that alert rules, GitOps health checks and kubectl-knn read:
phases, revision states, condition reasons, Event reasons. The names are the
contract; the KnnIndex model's Phase literal must list exactly PHASES."""

from typing import Final

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
