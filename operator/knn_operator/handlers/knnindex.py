"""kopf wiring for KnnIndex: watch caches of owned objects, and events that
ask the reconciler to look again. No decisions are made here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, cast

import kopf
from knn_contracts import api

from ..kube import Body, Kube
from ..reconciler import Children, Key, Reconciler
from ..settings import Settings

log = logging.getLogger("knn_operator")
# Any: kopf's MetaFilter alias is not public.
OWNED: dict[str, Any] = {api.LABEL_INDEX: kopf.PRESENT}
BUILDER_PODS: dict[str, Any] = {api.LABEL_INDEX: kopf.PRESENT, api.LABEL_COMPONENT: "builder"}

_state: dict[str, Any] = {}


def _snapshot(body: kopf.Body) -> Body:
    return {"metadata": dict(body.metadata), "spec": dict(body.spec), "status": dict(body.status)}


def _owner_key(namespace: str | None, labels: kopf.Labels) -> Key:
    return (namespace or "", labels[api.LABEL_INDEX])


@kopf.index("batch", "v1", "jobs", labels=OWNED)
def knn_jobs(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[Key, Body]:
    return {_owner_key(namespace, labels): _snapshot(body)}


@kopf.index("apps", "v1", "deployments", labels=OWNED)
def knn_deployments(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[Key, Body]:
    return {_owner_key(namespace, labels): _snapshot(body)}


@kopf.index("v1", "pods", labels=BUILDER_PODS)
def knn_builder_pods(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[tuple[str, str, str], Body]:
    key = (namespace or "", labels[api.LABEL_INDEX], labels.get(api.LABEL_VERSION, ""))
    return {key: _snapshot(body)}


@kopf.index(api.GROUP, api.VERSION, api.KNN_INDEX_PLURAL)
def knn_indexes(namespace: str | None, name: str, **_: Any) -> dict[str, Key]:
    return {"all": (namespace or "", name)}


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.level = logging.INFO
    settings.posting.reporting_component = "knn-operator"
    # The chart installs the CRDs before the operator, and the RBAC grants no
    # access to CRDs or namespaces: without this kopf retries forbidden lists of
    # customresourcedefinitions (and, with --namespace, of namespaces) at start-up.
    settings.scanning.disabled = True
    settings.watching.server_timeout = 300
    _state["kube"] = await Kube.connect()
    _state["settings"] = Settings.from_env()


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    task = _state.pop("resync", None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    _state.pop("reconciler", None)
    kube = _state.pop("kube", None)
    if kube is not None:
        await kube.close()


def _reconciler(kwargs: dict[str, Any]) -> Reconciler:
    """The reconciler, bound on first use to kopf's indexes (which only handlers receive)."""
    existing: Reconciler | None = _state.get("reconciler")
    if existing is not None:
        return existing
    jobs: kopf.Index[Key, Body] = kwargs["knn_jobs"]
    deps: kopf.Index[Key, Body] = kwargs["knn_deployments"]
    pods: kopf.Index[tuple[str, str, str], Body] = kwargs["knn_builder_pods"]
    indexes: kopf.Index[str, Key] = kwargs["knn_indexes"]
    children = Children(
        jobs=lambda key: list(jobs.get(key, [])),
        deployments=lambda key: list(deps.get(key, [])),
        builder_pods=lambda key, v: list(pods.get((key[0], key[1], v), [])),
    )
    settings: Settings = _state["settings"]
    reconciler = Reconciler(_state["kube"], settings, children, _post_event)
    _state["reconciler"] = reconciler
    _state["resync"] = asyncio.create_task(_resync(reconciler, indexes, settings.resync_seconds))
    return reconciler


async def _resync(reconciler: Reconciler, index: kopf.Index[str, Key], every: float) -> None:
    """Level-based safety net: look at every object again now and then."""
    while True:
        await asyncio.sleep(every)
        for key in list(index.get("all", [])):
            await reconciler.request(key)


def _post_event(body: Body, type_: str, reason: str, message: str) -> None:
    meta = body["metadata"]
    ref: dict[str, Any] = {
        "apiVersion": api.API_VERSION,
        "kind": api.KNN_INDEX_KIND,
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
    }
    kopf.event(kopf.Body(cast(kopf.RawBody, ref)), type=type_, reason=reason, message=message)


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
