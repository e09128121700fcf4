"""The series names alerts and dashboards select, read from their sources.

Serving pods' names come from knn_contracts.metrics; the operator's from
knn_contracts.rollout where the contract names them, else from the metric objects
in knn_operator.metrics themselves (reconcile duration and errors, objects by
phase are not in the contracts yet), so a renamed metric or label changes the
rules instead of silently breaking them.
"""

from __future__ import annotations

from typing import Final

from knn_contracts import api
from knn_contracts import metrics as serving
from knn_contracts import rollout as names
from prometheus_client.metrics import MetricWrapperBase

from .. import metrics as operator_metrics


def family(metric: MetricWrapperBase) -> str:
    """The exposed family name (a counter's samples add `_total`)."""
    (desc,) = metric.describe()
    return desc.name


def labels_of(metric: MetricWrapperBase) -> tuple[str, ...]:
    # prometheus_client has no public accessor for a metric's label names.
    return tuple(metric._labelnames)


def label(metric: MetricWrapperBase, name: str) -> str:
    """`name`, checked to be one of `metric`'s labels (a rule on a missing label would
    select nothing and never fire)."""
    if name not in labels_of(metric):
        raise ValueError(f"{family(metric)} has no label {name!r}: {labels_of(metric)}")
    return name


# --- serving pods -------------------------------------------------------------------------------
RECALL: Final = serving.RECALL
DURATION_BUCKET: Final = f"{serving.QUERY_DURATION}_bucket"
DURATION_COUNT: Final = f"{serving.QUERY_DURATION}_count"
REQUESTS: Final = f"{serving.REQUESTS}_total"
LIVE_FOUND: Final = f"{serving.LIVE_RECALL_FOUND}_total"
LIVE_EXPECTED: Final = f"{serving.LIVE_RECALL_EXPECTED}_total"
INDEX_INFO: Final = serving.INDEX_INFO
INDEX_VECTORS: Final = serving.INDEX_VECTORS
# One serving revision: what every server labels its own series with.
REVISION: Final = (serving.LABEL_NAMESPACE, serving.LABEL_INDEX, serving.LABEL_VERSION)
# A ClusterModel's revision: its servers name it with `model` instead of `index`.
MODEL_REVISION: Final = (serving.LABEL_NAMESPACE, serving.LABEL_MODEL, serving.LABEL_VERSION)
DRIFT_PSI: Final = serving.CLUSTER_DRIFT_PSI

# --- the operator -------------------------------------------------------------------------------
KIND: Final = label(operator_metrics.OBJECTS, "kind")
PHASE: Final = label(operator_metrics.OBJECTS, "phase")
OBJECTS: Final = family(operator_metrics.OBJECTS)
RECONCILES: Final = f"{family(operator_metrics.RECONCILE_DURATION)}_count"
RECONCILE_ERRORS: Final = f"{family(operator_metrics.RECONCILE_ERRORS)}_total"
ROLLOUTS: Final = f"{names.METRIC_ROLLOUTS}_total"
OUTCOME: Final = label(operator_metrics.ROLLOUTS, names.LABEL_OUTCOME)
MEASUREMENTS: Final = f"{names.METRIC_MEASUREMENTS}_total"
RESULT: Final = label(operator_metrics.ANALYSIS_MEASUREMENTS, names.LABEL_RESULT)
CHECK: Final = label(operator_metrics.ANALYSIS_MEASUREMENTS, names.LABEL_CHECK)
CANARY_WEIGHT: Final = names.METRIC_CANARY_WEIGHT
# The canary weight's object labels: its namespace and name (the index's name).
WEIGHT_NAMESPACE: Final = label(operator_metrics.CANARY_WEIGHT, serving.LABEL_NAMESPACE)
WEIGHT_NAME: Final = label(operator_metrics.CANARY_WEIGHT, "name")
KNN_INDEX_KIND: Final = api.KNN_INDEX_KIND
