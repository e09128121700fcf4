"""What the caches keep of each object: only what observe.py and the planner read
(no managedFields, pod templates or annotations of children), so that memory grows
with the number of objects, not with the size of their bodies. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Body = dict[str, Any]


def _meta(meta: Mapping[str, Any]) -> Body:
    return {
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "resourceVersion": meta.get("resourceVersion"),
        "labels": dict(meta.get("labels") or {}),
        "generation": meta.get("generation"),
        "creationTimestamp": meta.get("creationTimestamp"),
    }


def job(body: Mapping[str, Any]) -> Body:
    conditions = (body.get("status") or {}).get("conditions")
    return {"metadata": _meta(body.get("metadata") or {}), "status": {"conditions": conditions}}


def deployment(body: Mapping[str, Any]) -> Body:
    return {
        "metadata": _meta(body.get("metadata") or {}),
        "spec": {"replicas": (body.get("spec") or {}).get("replicas", 1)},
        "status": dict(body.get("status") or {}),
    }


def pod(body: Mapping[str, Any]) -> Body:
    statuses = (body.get("status") or {}).get("containerStatuses")
    meta = _meta(body.get("metadata") or {})
    return {"metadata": meta, "status": {"containerStatuses": statuses}}


def owned(body: Mapping[str, Any]) -> Body:
    """One of the operator's own objects (a KnnIndex): everything but managedFields,
    which is most of its size and which the planner never reads."""
    meta = {k: v for k, v in (body.get("metadata") or {}).items() if k != "managedFields"}
    return {**{k: v for k, v in body.items() if k != "metadata"}, "metadata": meta}
