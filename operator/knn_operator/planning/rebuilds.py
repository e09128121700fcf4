"""Retraining triggers (spec.rebuild.schedule, spec.rebuild.onDrift): whether one
fires in this pass, and so which token the target version is built for. Pure.

A trigger names a token (`<reason>@<time>`) that goes into the version's identity
(versioning.version_of), and is kept in status.lastRebuild so later passes derive
the same version. The new version is then built and rolled out like any other.

Decisions, each documented in docs/operations.md:
- The schedule counts fires after the start of the current target version's build:
  fires missed while the operator was down, or while a build or a rollout was in
  progress, make one rebuild, not one each (its Event says how many were missed).
- No trigger fires while the target version builds or a canary rolls out: it
  would supersede them. It waits for them to end (a failed build or a rolled-back
  canary does not hold it).
- A drift rebuild also waits until minInterval has passed since the current
  version's build started.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from knn_contracts import rollout as names

from ..events import Event
from ..models.knnindex import BuildRecord, KnnIndexStatus
from ..models.rebuild import DriftStatus, LastRebuild
from ..timeutil import duration_seconds, iso, parse_iso, seconds_until
from ..triggers import drift as drift_trigger
from ..triggers.cron import due_since, parse_schedule
from ..versioning import version_of
from .builds import record
from .types import Observed, Plan

BUSY_RECHECK_SECONDS = 60.0  # a due trigger held by a build or a rollout looks again


@dataclass(frozen=True)
class Rebuilds:
    token: str | None  # the trigger token the target version is built for
    last: LastRebuild | None
    drift: DriftStatus | None
    next_scheduled: str | None


def current_version(obs: Observed) -> str:
    """The target version before any trigger of this pass."""
    last = obs.status.last_rebuild
    return version_of(obs.spec, obs.rebuild_annotation, last.token if last else None)


def busy(status: KnnIndexStatus, target: BuildRecord | None) -> str | None:
    """Why a trigger must wait, or None: a build or a rollout it would supersede."""
    if target is None or target.outcome == "Building":
        return "a build is in progress"
    if target.outcome == "Failed":
        return None
    if status.rollout is not None or status.canary_revision is not None:
        return "a rollout is in progress"
    if status.stable_revision is None:
        return "the first revision is not serving yet"
    return None


def build_started(status: KnnIndexStatus, target: BuildRecord | None) -> dt.datetime | None:
    """When the current version's build started (records from before `started` was
    kept fall back to when it finished)."""
    if target is None:
        return None
    return parse_iso(target.started) or parse_iso(target.finished)


def drift_due(obs: Observed, now: dt.datetime) -> str | None:
    """The stable revision to measure drift of now, or None (the prepare step's test)."""
    on, st = obs.spec.rebuild.on_drift, obs.status
    if on is None or st.stable_revision is None:
        return None
    if busy(st, record(list(st.builds), current_version(obs))) is not None:
        return None
    due = drift_trigger.is_due(on, st.drift, st.stable_revision, now)
    return st.stable_revision if due else None


def _scheduled(
    obs: Observed, started: dt.datetime | None, held: str | None, now: dt.datetime, out: Plan
) -> tuple[LastRebuild | None, str | None]:
    """A schedule trigger (token not yet set) when a fire is due, and the next fire."""
    if obs.spec.rebuild.schedule is None:
        return None, None
    schedule = parse_schedule(obs.spec.rebuild.schedule)
    next_fire = schedule.next_after(now)
    if next_fire is not None:
        out.wake_within(seconds_until(next_fire, now))
    due = due_since(schedule, started, now) if started is not None else None
    if due is None:
        return None, iso(next_fire) if next_fire else None
    if held is not None:
        out.wake_within(BUSY_RECHECK_SECONDS)
        return None, iso(next_fire) if next_fire else None
    missed = ""
    if due.missed > 1:
        missed = f" ({due.missed} fires since the last build, caught up as one)"
    message = f"schedule {schedule.expression!r} fired at {iso(due.latest)}{missed}"
    trigger = LastRebuild(
        reason=names.TRIGGER_SCHEDULE, at=iso(now), version="", token="", fire=iso(due.latest),
        missed=due.missed, message=message,
    )  # fmt: skip
    return trigger, iso(next_fire) if next_fire else None


def _drifted(
    obs: Observed, started: dt.datetime | None, held: str | None, now: dt.datetime, out: Plan
) -> tuple[LastRebuild | None, DriftStatus | None]:
    on, st = obs.spec.rebuild.on_drift, obs.status
    if on is None or st.stable_revision is None:
        return None, None
    drift = st.drift if st.drift and st.drift.revision == st.stable_revision else None
    if obs.drift is not None:
        drift, events = drift_trigger.fold(on, drift, obs.drift)
        out.events.extend(events)
    if held is not None:
        out.wake_within(BUSY_RECHECK_SECONDS)
        return None, drift
    due = drift_trigger.next_due(on, drift, st.stable_revision)
    out.wake_within(seconds_until(due, now) if due else duration_seconds(on.interval))
    if obs.drift is None or drift is None:
        return None, drift  # decided only on a measurement of this pass
    decided = drift_trigger.decide(on, drift, started, now)
    if decided is None:
        return None, drift
    trigger = LastRebuild(
        reason=names.TRIGGER_DRIFT, at=iso(now), version="", token="", value=decided.value,
        message=decided.message,
    )  # fmt: skip
    return trigger, drift


def rebuilds_stage(obs: Observed, now: dt.datetime, out: Plan) -> Rebuilds:
    st = obs.status
    last = st.last_rebuild
    if obs.spec.rebuild.schedule is None and obs.spec.rebuild.on_drift is None:
        return Rebuilds(last.token if last else None, last, None, None)
    target = record(list(st.builds), current_version(obs))
    started, held = build_started(st, target), busy(st, target)
    scheduled, next_fire = _scheduled(obs, started, held, now, out)
    drifted, drift = _drifted(obs, started, held, now, out)
    trigger = scheduled or drifted
    if trigger is None:
        return Rebuilds(last.token if last else None, last, drift, next_fire)
    token = f"{trigger.reason.lower()}@{trigger.at}"
    version = version_of(obs.spec, obs.rebuild_annotation, token)
    last = trigger.model_copy(update={"token": token, "version": version})
    reason = {
        names.TRIGGER_SCHEDULE: names.EVENT_SCHEDULED_REBUILD,
        names.TRIGGER_DRIFT: names.EVENT_DRIFT_REBUILD,
    }
    message = f"{last.message}; building version {version}"
    out.events.append(Event("Normal", reason[trigger.reason], message))
    return Rebuilds(token, last, drift, next_fire)
