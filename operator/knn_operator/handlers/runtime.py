"""What every kind's handlers share: start-up and clean-up, the API client and
settings, one reconciler per kind with its caches, the resync safety net and
Event posting."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import kopf

from ..caches.kind import KindCaches
from ..kinds import Key, Kind
from ..kinds.clustermodel import CLUSTER_MODEL
from ..kinds.knnindex import KNN_INDEX
from ..kube import Body, Kube
from ..reconciler import Reconciler
from ..settings import Settings

log = logging.getLogger("knn_operator")
KINDS: tuple[Kind, ...] = (KNN_INDEX, CLUSTER_MODEL)


@dataclass
class Runtime:
    kube: Kube | None = None
    settings: Settings | None = None
    # What the operator watches: namespaces, or (None,) for the whole cluster.
    namespaces: tuple[str | None, ...] = (None,)
    reconcilers: dict[str, Reconciler] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # kopf.event() finds kopf's Event queue in context variables that kopf sets only
    # for resource handlers; reconciles asked for by the caches' informers run
    # outside them, so they post in a context captured from a handler.
    posting: contextvars.Context | None = None


_runtime = Runtime()


def watch_namespaces(namespaces: list[str]) -> None:
    """Called by __main__ before kopf starts, with the same namespaces kopf gets."""
    _runtime.namespaces = tuple(namespaces) or (None,)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.level = logging.INFO
    settings.posting.reporting_component = "knn-operator"
    # The chart installs the CRDs before the operator, and the RBAC grants no
    # access to CRDs or namespaces: without this kopf retries forbidden lists of
    # customresourcedefinitions (and, with --namespace, of namespaces) at start-up.
    settings.scanning.disabled = True
    settings.watching.server_timeout = 300
    _runtime.kube = kube = await Kube.connect()
    _runtime.settings = Settings.from_env()
    for kind in KINDS:
        cache = KindCaches.of(kind)
        rec = Reconciler(kind, kube, _runtime.settings, cache, _poster(kind))
        _runtime.reconcilers[kind.kind] = rec
        for informer in cache.informers(kube, _runtime.namespaces, _known(rec)):
            _runtime.tasks.append(asyncio.create_task(informer.run()))
        every = _runtime.settings.resync_seconds
        _runtime.tasks.append(asyncio.create_task(_resync(rec, cache.keys, every)))


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    for task in _runtime.tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    _runtime.tasks.clear()
    _runtime.reconcilers.clear()
    if _runtime.kube is not None:
        await _runtime.kube.close()
        _runtime.kube = None


def reconciler(kind: Kind) -> Reconciler:
    """The kind's reconciler, for a kopf resource handler (whose context is kept
    for posting Events)."""
    rec = _runtime.reconcilers.get(kind.kind)
    assert rec is not None, "startup has not run"
    if _runtime.posting is None:
        _runtime.posting = contextvars.copy_context()
    return rec


def _known(rec: Reconciler) -> Callable[[Key], None]:
    """A change of an owner's children asks for a pass only when the owner is cached:
    one not (yet) cached is reconciled when its own event arrives, and a deleted
    one needs nothing."""

    def changed(key: Key) -> None:
        if rec.cache.object(key) is not None:
            rec.enqueue(key)

    return changed


async def _resync(rec: Reconciler, all_keys: Callable[[], list[Key]], every: float) -> None:
    """Level-based safety net: look at every object again now and then, read afresh
    from the API (so a cache entry a missed event left stale is corrected too)."""
    while True:
        await asyncio.sleep(every)
        for key in all_keys():
            await rec.request(key, fresh=True)


def _poster(kind: Kind) -> Callable[[Body, str, str, str], None]:
    def post(body: Body, type_: str, reason: str, message: str) -> None:
        meta = body["metadata"]
        ref: dict[str, Any] = {
            "apiVersion": kind.api_version,
            "kind": kind.kind,
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
        }
        obj = kopf.Body(cast(kopf.RawBody, ref))
        try:
            kopf.event(obj, type=type_, reason=reason, message=message)
        except LookupError:  # not under a kopf handler: see Runtime.posting
            assert _runtime.posting is not None, "no kopf handler has run yet"
            _runtime.posting.run(kopf.event, obj, type=type_, reason=reason, message=message)

    return post
