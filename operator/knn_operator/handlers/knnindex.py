"""kopf wiring for KnnIndex: watch caches of owned objects, and events that
ask the reconciler to look again. No decisions are made here."""

from __future__ import annotations

from typing import Any

import kopf
from knn_contracts import api

from ..kinds import Children, Key
from ..kinds.knnindex import KNN_INDEX
from ..kube import Body
from ..reconciler import Reconciler
from .runtime import reconciler_for

# Any: kopf's MetaFilter alias is not public.
OWNED: dict[str, Any] = {KNN_INDEX.owner_label: kopf.PRESENT}
BUILDER_PODS: dict[str, Any] = {
    KNN_INDEX.owner_label: kopf.PRESENT,
    api.LABEL_COMPONENT: "builder",
}


def _meta(body: kopf.Body) -> Body:
    """What observe.py reads of any child's metadata: not managedFields, annotations
    or owner references, which would multiply the caches' memory by thousands."""
    m = body.metadata
    return {
        "name": m.get("name"),
        "labels": dict(m.labels),
        "generation": m.get("generation"),
        "creationTimestamp": m.get("creationTimestamp"),
    }


def _job(body: kopf.Body) -> Body:
    return {"metadata": _meta(body), "status": {"conditions": body.status.get("conditions")}}


def _deployment(body: kopf.Body) -> Body:
    return {
        "metadata": _meta(body),
        "spec": {"replicas": body.spec.get("replicas", 1)},
        "status": dict(body.status),
    }


def _pod(body: kopf.Body) -> Body:
    statuses = body.status.get("containerStatuses")
    return {"metadata": _meta(body), "status": {"containerStatuses": statuses}}


def _owner_key(namespace: str | None, labels: kopf.Labels) -> Key:
    return (namespace or "", labels[KNN_INDEX.owner_label])


@kopf.index("batch", "v1", "jobs", labels=OWNED)
def knn_jobs(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[Key, Body]:
    return {_owner_key(namespace, labels): _job(body)}


@kopf.index("apps", "v1", "deployments", labels=OWNED)
def knn_deployments(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[Key, Body]:
    return {_owner_key(namespace, labels): _deployment(body)}


@kopf.index("v1", "pods", labels=BUILDER_PODS)
def knn_builder_pods(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[tuple[str, str, str], Body]:
    key = (namespace or "", labels[KNN_INDEX.owner_label], labels.get(api.LABEL_VERSION, ""))
    return {key: _pod(body)}


@kopf.index(api.GROUP, api.VERSION, api.KNN_INDEX_PLURAL)
def knn_indexes(namespace: str | None, name: str, **_: Any) -> dict[str, Key]:
    return {"all": (namespace or "", name)}


def _reconciler(kwargs: dict[str, Any]) -> Reconciler:
    jobs: kopf.Index[Key, Body] = kwargs["knn_jobs"]
    deps: kopf.Index[Key, Body] = kwargs["knn_deployments"]
    pods: kopf.Index[tuple[str, str, str], Body] = kwargs["knn_builder_pods"]
    indexes: kopf.Index[str, Key] = kwargs["knn_indexes"]

    def children() -> Children:
        return Children(
            jobs=lambda key: list(jobs.get(key, [])),
            deployments=lambda key: list(deps.get(key, [])),
            builder_pods=lambda key, v: list(pods.get((key[0], key[1], v), [])),
        )

    return reconciler_for(KNN_INDEX, children, lambda: list(indexes.get("all", [])))


@kopf.on.event(api.GROUP, api.VERSION, api.KNN_INDEX_PLURAL)
async def knnindex_event(type: str, namespace: str | None, name: str, **kw: Any) -> None:
    key = (namespace or "", name)
    if type == "DELETED":
        _reconciler(kw).forget(key)
        return
    await _reconciler(kw).request(key)


@kopf.on.event("batch", "v1", "jobs", labels=OWNED)
async def job_event(namespace: str | None, labels: kopf.Labels, **kw: Any) -> None:
    await _reconciler(kw).request(_owner_key(namespace, labels))


@kopf.on.event("apps", "v1", "deployments", labels=OWNED)
async def deployment_event(namespace: str | None, labels: kopf.Labels, **kw: Any) -> None:
    await _reconciler(kw).request(_owner_key(namespace, labels))


@kopf.on.event("v1", "pods", labels=BUILDER_PODS)
async def builder_pod_event(namespace: str | None, labels: kopf.Labels, **kw: Any) -> None:
    await _reconciler(kw).request(_owner_key(namespace, labels))
