"""Condition types and reasons the operator writes to status.

Alert rules, GitOps health checks and kubectl-knn read them; the names are the
contract. (Phases are the Phase literal of the KnnIndex model.)
"""

from typing import Final

CONDITION_READY: Final = "Ready"
CONDITION_BUILT: Final = "Built"
CONDITION_PROGRESSING: Final = "Progressing"
CONDITION_DEGRADED: Final = "Degraded"
# Whether the serving spec (today: hnsw.efSearch) is accepted for the target
# version, judged against the recall curve its build recorded.
CONDITION_SERVING_SPEC_ACCEPTED: Final = "ServingSpecAccepted"

REASON_ACCEPTED: Final = "Accepted"
REASON_NOT_BUILT: Final = "NotBuilt"
REASON_NO_RECALL_CURVE: Final = "NoRecallCurve"  # built before curves were recorded
REASON_EF_SEARCH_BELOW_MIN_RECALL: Final = "EfSearchBelowMinRecall"
# Event reason when a serving efSearch is refused.
EVENT_EF_SEARCH_REFUSED: Final = "EfSearchRefused"
