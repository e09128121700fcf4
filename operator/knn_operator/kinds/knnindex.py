"""KnnIndex as a kind: an HNSW index, observed and planned by the shared machinery."""

from __future__ import annotations

from typing import get_args

from knn_contracts import api

from ..models.knnindex import KnnIndexSpec, KnnIndexStatus, Phase
from ..planning import plan
from ..planning.workload import HNSW
from . import Kind
from .preparing import prepare
from .reading import observer

observe = observer(api.KNN_INDEX_KIND, KnnIndexSpec, KnnIndexStatus, HNSW)

KNN_INDEX = Kind(
    kind=api.KNN_INDEX_KIND,
    plural=api.KNN_INDEX_PLURAL,
    api_version=api.API_VERSION,
    owner_label=api.LABEL_INDEX,
    status_model=KnnIndexStatus,
    phases=get_args(Phase),
    observe=observe,
    plan=plan,
    prepare=prepare,
)
