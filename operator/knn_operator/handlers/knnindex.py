"""kopf wiring for KnnIndex: its events feed the cache and ask the reconciler to
look again. No decisions are made here. Its children (Jobs, Deployments, builder
Pods) are watched by the caches' own informers (caches/), not by kopf."""

from __future__ import annotations

from typing import Any

import kopf
from knn_contracts import api

from ..kinds.knnindex import KNN_INDEX
from .runtime import reconciler


@kopf.on.event(api.GROUP, api.VERSION, api.KNN_INDEX_PLURAL)
async def knnindex_event(
    type: str, namespace: str | None, name: str, event: kopf.RawEvent, **_: Any
) -> None:
    rec = reconciler(KNN_INDEX)
    key = (namespace or "", name)
    if type == "DELETED":
        rec.cache.gone(key)
        rec.forget(key)
        return
    # An event that changes nothing the cache holds (the echo of the operator's own
    # status write, whose answer is already stored) needs no pass.
    if rec.cache.observed(event["object"]) is not None:
        rec.enqueue(key)
