"""ClusterModel as a kind: a k-means model, observed, planned, rolled out and
analysed by the same machinery as a KnnIndex (only its workload differs)."""

from __future__ import annotations

from typing import get_args

from knn_contracts import api

from ..models.clustermodel import ClusterModelSpec, ClusterModelStatus
from ..models.knnindex import Phase
from ..planning import plan
from ..planning.workload import KMEANS
from . import Kind
from .preparing import prepare
from .reading import observer

observe = observer(api.CLUSTER_MODEL_KIND, ClusterModelSpec, ClusterModelStatus, KMEANS)

CLUSTER_MODEL = Kind(
    kind=api.CLUSTER_MODEL_KIND,
    plural=api.CLUSTER_MODEL_PLURAL,
    api_version=api.API_VERSION,
    owner_label=api.LABEL_MODEL,
    status_model=ClusterModelStatus,
    phases=get_args(Phase),
    observe=observe,
    plan=plan,
    # Kind-generic: the analysis measures what the spec's thresholds ask.
    prepare=prepare,
)
