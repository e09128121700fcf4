"""Run the planner for one object of a kind and carry out its plan.

Reconciles of one object never overlap: requests that arrive while one runs
mark the object dirty and the running reconcile goes round once more, so a
burst of child events costs one or two passes, not one per event. The plan
says when it wants to run again; errors retry with a bounded backoff.

A pass plans from the caches (the object as its last event or the operator's
own last write left it, and its children), and waits until every cache has been
listed once. The resync asks for a fresh read, so an entry a missed event left
behind is corrected within one resync period.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections import Counter as Tally
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from knn_contracts import api
from pydantic import BaseModel, ValidationError

from . import metrics
from .caches.kind import KindCaches
from .events import Event
from .kinds import Key, Kind
from .kube import Body, Kube, KubeError
from .models.common import ObjectMeta
from .planning import Plan
from .routers.client import write_route
from .schedule import Backoff, Wakeups
from .settings import Settings

log = logging.getLogger("knn_operator")
EventSink = Callable[[Body, str, str, str], None]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def changed_meanwhile(planned: Mapping[str, Any], written: Mapping[str, Any]) -> bool:
    """Whether the answer to the status write shows the object changed since the
    body the pass planned from (a spec edit, an annotation): its own event is
    older than the stored answer and asks for nothing, so the caller looks again."""

    def rest(body: Mapping[str, Any]) -> tuple[Any, Any]:
        meta = body.get("metadata") or {}
        ignored = ("resourceVersion", "managedFields")
        return (
            {k: v for k, v in body.items() if k not in ("status", "metadata")},
            {k: v for k, v in meta.items() if k not in ignored},
        )

    return bool(written) and rest(planned) != rest(written)


def _status_doc(status: BaseModel) -> dict[str, Any]:
    return status.model_dump(by_alias=True, exclude_none=True, mode="json")


@dataclass
class Reconciler:
    kind: Kind
    kube: Kube
    settings: Settings
    cache: KindCaches
    post_event: EventSink
    clock: Callable[[], dt.datetime] = utcnow
    backoff: Backoff = field(default_factory=Backoff)
    phases: dict[Key, str] = field(default_factory=dict)
    _running: set[Key] = field(default_factory=set)
    _dirty: set[Key] = field(default_factory=set)
    _fresh: set[Key] = field(default_factory=set)  # to be read from the API, not the cache
    _failures: dict[Key, int] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _wakeups: Wakeups[Key] = field(init=False)
    _slots: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self._wakeups = Wakeups(self.enqueue)
        self._slots = asyncio.Semaphore(max(1, self.settings.max_concurrent_reconciles))

    def enqueue(self, key: Key) -> None:
        """Ask for a pass without waiting for it (from a cache's change callback)."""
        if key in self._running:
            self._dirty.add(key)
            return
        task = asyncio.get_running_loop().create_task(self.request(key))
        self._tasks.add(task)  # a task nobody references can be collected mid-flight
        task.add_done_callback(self._tasks.discard)

    async def request(self, key: Key, *, fresh: bool = False) -> None:
        self._dirty.add(key)
        if fresh:
            self._fresh.add(key)
        if key in self._running:
            return
        self._running.add(key)
        try:
            while key in self._dirty:
                self._dirty.discard(key)
                await self._guarded(key)
        finally:
            self._running.discard(key)

    async def _guarded(self, key: Key) -> None:
        label = self.kind.kind
        await self.cache.ready()
        async with self._slots:
            fresh = key in self._fresh
            self._fresh.discard(key)
            await self._measured(key, label, fresh)

    async def _measured(self, key: Key, label: str, fresh: bool) -> None:
        start = time.perf_counter()
        try:
            requeue = await self._once(key, fresh)
        except Exception as e:
            metrics.RECONCILE_ERRORS.labels(label).inc()
            failures = self._failures[key] = self._failures.get(key, 0) + 1
            retryable = not isinstance(e, KubeError) or e.retryable
            delay = self.backoff.delay(failures, retryable)
            if isinstance(e, KubeError):
                log.error("%s/%s: %s; retry in %.0fs", *key, e, delay)
            else:
                log.exception("%s/%s: reconcile failed; retry in %.0fs", *key, delay)
            self._wakeups.at_most_in(key, delay)
        else:
            self._failures.pop(key, None)
            if requeue is not None:
                self._wakeups.at_most_in(key, requeue)
        finally:
            metrics.RECONCILE_DURATION.labels(label).observe(time.perf_counter() - start)

    def forget(self, key: Key) -> None:
        self.phases.pop(key, None)
        with contextlib.suppress(KeyError):  # never reconciled here
            metrics.CANARY_WEIGHT.remove(self.kind.kind, *key)
        self._failures.pop(key, None)
        self._wakeups.cancel(key)
        self._update_phase_gauge()

    async def _read(self, key: Key, fresh: bool) -> Body | None:
        """The object from the cache, or from the API when asked to or not cached."""
        body = None if fresh else self.cache.object(key)
        if body is not None:
            return body
        k = self.kind
        read = await self.kube.get(k.api_version, k.kind, *key)
        if read is None:
            self.cache.gone(key)
            return None
        self.cache.observed(read)
        return self.cache.object(key)  # the newer of the read and what the cache held

    async def _once(self, key: Key, fresh: bool = False) -> float | None:
        k = self.kind
        body = await self._read(key, fresh)
        if body is None or body["metadata"].get("deletionTimestamp"):
            self.forget(key)
            return None
        try:
            obs = k.observe(body, self.cache.children())
        except ValidationError as e:
            await self._refuse(body, e)
            return None
        now = self.clock()
        early: list[Event] = []
        if k.prepare is not None:
            obs, early = await k.prepare(self.kube, obs, now)
        result = k.plan(obs, self.settings, now)
        for obj in result.apply:
            if self.cache.written(await self.kube.apply(obj)):
                self._dirty.add(key)
        for obj in result.handover:
            handed = await self.kube.apply(obj, field_manager=api.FIELD_MANAGER_HANDOVER)
            if self.cache.written(handed):
                self._dirty.add(key)
        # After the Services a route names exist and select their revisions.
        for route in result.routes:
            await write_route(self.kube, route)
        for kind, name in result.delete:
            await self.kube.delete(kind, key[0], name)
        new_status = _status_doc(result.status)
        if new_status != (body.get("status") or {}):
            patch = self._status_patch(body, new_status)
            after = await self.kube.apply(patch, status=True)
            self.cache.written(after)
            if changed_meanwhile(body, after):
                self._dirty.add(key)
        for ev in [*early, *result.events]:
            self._event(body, ev)
        self.phases[key] = str(getattr(result.status, "phase", None) or "Pending")
        self._update_phase_gauge()
        self._rollout_metrics(key, result)
        return result.requeue_after

    def _status_patch(self, body: Body, status: Mapping[str, Any]) -> Body:
        meta = ObjectMeta.model_validate(body["metadata"])
        return {
            "apiVersion": self.kind.api_version,
            "kind": self.kind.kind,
            "metadata": {"name": meta.name, "namespace": meta.namespace},
            "status": dict(status),
        }

    async def _refuse(self, body: Body, error: ValidationError) -> None:
        """A spec the API server accepted but the operator cannot use (schema drift)."""
        first = error.errors()[0]
        where = "spec." + ".".join(str(x) for x in first["loc"])
        message = f"{where}: {first['msg']}"
        try:
            old = self.kind.status_model.model_validate(body.get("status") or {})
        except ValidationError:
            old = self.kind.status_model()
        status = old.model_copy(
            update={
                "phase": "Failed",
                "message": message,
                "observed_generation": body["metadata"].get("generation"),
            }
        )
        patch = self._status_patch(body, _status_doc(status))
        self.cache.written(await self.kube.apply(patch, status=True))
        self._event(body, Event("Warning", "InvalidSpec", message))

    def _event(self, body: Body, ev: Event) -> None:
        self.post_event(body, ev.type, ev.reason, ev.message)

    def _rollout_metrics(self, key: Key, result: Plan) -> None:
        label = self.kind.kind
        weight = getattr(result.status, "canary_weight", None) or 0
        metrics.CANARY_WEIGHT.labels(label, *key).set(weight)
        for outcome in result.outcomes:
            metrics.ROLLOUTS.labels(label, outcome).inc()
        for reason in result.triggers:
            metrics.REBUILD_TRIGGERS.labels(label, reason).inc()
        if result.breach_to_stable is not None:
            metrics.BREACH_TO_STABLE.labels(label).observe(result.breach_to_stable)

    def _update_phase_gauge(self) -> None:
        tally = Tally(self.phases.values())
        for phase in self.kind.phases:
            metrics.OBJECTS.labels(self.kind.kind, phase).set(tally.get(phase, 0))
