"""kopf wiring for ClusterModel: the same as KnnIndex's (handlers/knnindex.py),
for the other kind descriptor. No decisions are made here."""

from __future__ import annotations

from typing import Any

import kopf
from knn_contracts import api

from ..kinds.clustermodel import CLUSTER_MODEL
from .runtime import reconciler


@kopf.on.event(api.GROUP, api.VERSION, api.CLUSTER_MODEL_PLURAL)
async def clustermodel_event(
    type: str, namespace: str | None, name: str, event: kopf.RawEvent, **_: Any
) -> None:
    rec = reconciler(CLUSTER_MODEL)
    key = (namespace or "", name)
    if type == "DELETED":
        rec.cache.gone(key)
        rec.forget(key)
        return
    if rec.cache.observed(event["object"]) is not None:
        rec.enqueue(key)
