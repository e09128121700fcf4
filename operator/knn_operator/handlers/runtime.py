"""What every kind's handlers share: start-up and clean-up, the API client and
settings, one reconciler per kind, the resync safety net and Event posting."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import kopf

from ..kinds import Children, Key, Kind
from ..kube import Body, Kube
from ..reconciler import Reconciler
from ..settings import Settings

log = logging.getLogger("knn_operator")


@dataclass
class Runtime:
    kube: Kube | None = None
    settings: Settings | None = None
    reconcilers: dict[str, Reconciler] = field(default_factory=dict)
    resyncs: list[asyncio.Task[None]] = field(default_factory=list)


_runtime = Runtime()


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.level = logging.INFO
    settings.posting.reporting_component = "knn-operator"
    # The chart installs the CRDs before the operator, and the RBAC grants no
    # access to CRDs or namespaces: without this kopf retries forbidden lists of
    # customresourcedefinitions (and, with --namespace, of namespaces) at start-up.
    settings.scanning.disabled = True
    settings.watching.server_timeout = 300
    _runtime.kube = await Kube.connect()
    _runtime.settings = Settings.from_env()


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    for task in _runtime.resyncs:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    _runtime.resyncs.clear()
    _runtime.reconcilers.clear()
    if _runtime.kube is not None:
        await _runtime.kube.close()
        _runtime.kube = None


def reconciler_for(
    kind: Kind, children: Callable[[], Children], all_keys: Callable[[], list[Key]]
) -> Reconciler:
    """The kind's reconciler, made on first use: kopf hands its indexes (which the
    children lookups read) only to handlers, so it cannot be made at start-up."""
    existing = _runtime.reconcilers.get(kind.kind)
    if existing is not None:
        return existing
    assert _runtime.kube is not None and _runtime.settings is not None, "startup has not run"
    rec = Reconciler(kind, _runtime.kube, _runtime.settings, children(), _poster(kind))
    _runtime.reconcilers[kind.kind] = rec
    every = _runtime.settings.resync_seconds
    _runtime.resyncs.append(asyncio.create_task(_resync(rec, all_keys, every)))
    return rec


async def _resync(rec: Reconciler, all_keys: Callable[[], list[Key]], every: float) -> None:
    """Level-based safety net: look at every object again now and then."""
    while True:
        await asyncio.sleep(every)
        for key in all_keys():
            await rec.request(key)


def _poster(kind: Kind) -> Callable[[Body, str, str, str], None]:
    def post(body: Body, type_: str, reason: str, message: str) -> None:
        meta = body["metadata"]
        ref: dict[str, Any] = {
            "apiVersion": kind.api_version,
            "kind": kind.kind,
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
        }
        kopf.event(kopf.Body(cast(kopf.RawBody, ref)), type=type_, reason=reason, message=message)

    return post
