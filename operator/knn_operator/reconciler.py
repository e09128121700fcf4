"""Run the planner for one KnnIndex and carry out its plan.

Reconciles of one object never overlap: requests that arrive while one runs
mark the object dirty and the running reconcile goes round once more, so a
burst of child events costs one or two passes, not one per event.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, get_args

from knn_contracts import api
from pydantic import ValidationError

from . import metrics
from .builders.common import Owner
from .builders.job import BUILDER_COMPONENT, GC_COMPONENT
from .kube import Body, Kube
from .models.knnindex import KnnIndexSpec, KnnIndexStatus, Phase
from .observe import DeploymentState, JobState, deployment_state, job_state
from .planning import Event, Observed, plan
from .settings import Settings

log = logging.getLogger("knn_operator")
Key = tuple[str, str]  # (namespace, name)
EventSink = Callable[[Body, str, str, str], None]


@dataclass
class Children:
    """Owned objects as the watch caches see them, looked up by owner."""

    jobs: Callable[[Key], Iterable[Body]]
    deployments: Callable[[Key], Iterable[Body]]
    builder_pods: Callable[[Key, str], Iterable[Body]]


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _by_version(bodies: Iterable[Body]) -> dict[str, Body]:
    out: dict[str, Body] = {}
    for b in bodies:
        v = (b.get("metadata", {}).get("labels") or {}).get(api.LABEL_VERSION)
        if v:
            out[v] = b
    return out


def _component(bodies: Iterable[Body], component: str) -> list[Body]:
    return [
        b
        for b in bodies
        if (b.get("metadata", {}).get("labels") or {}).get(api.LABEL_COMPONENT) == component
    ]


def observe(body: Body, children: Children) -> Observed:
    meta = body["metadata"]
    key = (meta["namespace"], meta["name"])
    owner = Owner(meta["name"], meta["namespace"], meta["uid"])
    spec = KnnIndexSpec.model_validate(body.get("spec") or {})
    try:
        status = KnnIndexStatus.model_validate(body.get("status") or {})
    except ValidationError:
        log.warning("%s/%s: unreadable status; starting afresh", *key)
        status = KnnIndexStatus()
    all_jobs = list(children.jobs(key))
    jobs: dict[str, JobState] = {
        v: job_state(j, children.builder_pods(key, v))
        for v, j in _by_version(_component(all_jobs, BUILDER_COMPONENT)).items()
    }
    gc_jobs = {
        v: job_state(j, ()) for v, j in _by_version(_component(all_jobs, GC_COMPONENT)).items()
    }
    deps: dict[str, DeploymentState] = {
        v: deployment_state(d) for v, d in _by_version(children.deployments(key)).items()
    }
    annotations = meta.get("annotations") or {}
    return Observed(
        owner,
        int(meta.get("generation") or 0),
        spec,
        status,
        jobs,
        deps,
        annotations.get(api.ANNOTATION_REBUILD),
        gc_jobs,
    )


def _status_doc(status: KnnIndexStatus) -> dict[str, Any]:
    return status.model_dump(by_alias=True, exclude_none=True, mode="json")


@dataclass
class Reconciler:
    kube: Kube
    settings: Settings
    children: Children
    post_event: EventSink
    phases: dict[Key, str] = field(default_factory=dict)
    _locks: dict[Key, asyncio.Lock] = field(default_factory=dict)
    _dirty: set[Key] = field(default_factory=set)

    async def request(self, key: Key) -> None:
        self._dirty.add(key)
        lock = self._locks.setdefault(key, asyncio.Lock())
        if lock.locked():
            return
        async with lock:
            while key in self._dirty:
                self._dirty.discard(key)
                start = time.perf_counter()
                try:
                    await self._once(key)
                except Exception:
                    metrics.RECONCILE_ERRORS.labels(api.KNN_INDEX_KIND).inc()
                    log.exception("%s/%s: reconcile failed; will retry", *key)
                    asyncio.get_running_loop().call_later(
                        5.0, lambda: asyncio.ensure_future(self.request(key))
                    )
                finally:
                    metrics.RECONCILE_DURATION.labels(api.KNN_INDEX_KIND).observe(
                        time.perf_counter() - start
                    )

    def forget(self, key: Key) -> None:
        self.phases.pop(key, None)
        self._update_phase_gauge()

    async def _once(self, key: Key) -> None:
        body = await self.kube.get(api.API_VERSION, api.KNN_INDEX_KIND, *key)
        if body is None or body["metadata"].get("deletionTimestamp"):
            self.forget(key)
            return
        try:
            obs = observe(body, self.children)
        except ValidationError as e:
            await self._refuse(body, e)
            return
        result = plan(obs, self.settings, now_iso())
        for obj in result.apply:
            await self.kube.apply(obj)
        for kind, name in result.delete:
            await self.kube.delete(kind, key[0], name)
        new_status = _status_doc(result.status)
        if new_status != (body.get("status") or {}):
            await self.kube.apply(self._status_patch(body, new_status), status=True)
        for ev in result.events:
            self._event(body, ev)
        self.phases[key] = result.status.phase or "Pending"
        self._update_phase_gauge()

    def _status_patch(self, body: Body, status: Mapping[str, Any]) -> Body:
        return {
            "apiVersion": api.API_VERSION,
            "kind": api.KNN_INDEX_KIND,
            "metadata": {
                "name": body["metadata"]["name"],
                "namespace": body["metadata"]["namespace"],
            },
            "status": dict(status),
        }

    async def _refuse(self, body: Body, error: ValidationError) -> None:
        """A spec the API server accepted but the operator cannot use (schema drift)."""
        first = error.errors()[0]
        where = "spec." + ".".join(str(x) for x in first["loc"])
        message = f"{where}: {first['msg']}"
        status = KnnIndexStatus.model_validate(body.get("status") or {}).model_copy(
            update={
                "phase": "Failed",
                "message": message,
                "observed_generation": body["metadata"].get("generation"),
            }
        )
        await self.kube.apply(self._status_patch(body, _status_doc(status)), status=True)
        self._event(body, Event("Warning", "InvalidSpec", message))

    def _event(self, body: Body, ev: Event) -> None:
        self.post_event(body, ev.type, ev.reason, ev.message)

    def _update_phase_gauge(self) -> None:
        tally = Tally(self.phases.values())
        for phase in get_args(Phase):
            metrics.OBJECTS.labels(api.KNN_INDEX_KIND, phase).set(tally.get(phase, 0))
