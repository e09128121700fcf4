"""Whether a retraining trigger fires in this pass, for any kind. Pure.

A kind's planner hands in what it knows in kind-neutral terms (the spec's
`rebuild`, the status' `lastRebuild` and `drift`, the stable revision, the current
version's build start, whether a build or a rollout is in flight, the drift
measured before the pass) and a function naming the version a token would build;
it gets back the token its target version is built for, the status to record, the
Events and when to look again.

Decisions (docs/operations.md "Retraining"):
- The schedule counts fires after the start of the current version's build: fires
  missed while the operator was down, or while a build or a rollout ran, make one
  rebuild, not one each.
- No trigger fires while a build or a rollout is in flight (it would supersede
  them); it waits for them to end.
- A drift rebuild is decided only on a measurement taken for this pass, after the
  hold lasted `for`, and not within minInterval of the current version's build.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from knn_contracts import rollout as names

from ..events import Event
from ..models.rebuild import DriftStatus, LastRebuild, Rebuild
from ..timeutil import duration_seconds, iso, seconds_until
from . import drift as drift_trigger
from .cron import due_since, parse_schedule

BUSY_RECHECK_SECONDS = 60.0  # a due trigger held by a build or a rollout looks again


def busy(target_outcome: str | None, rolling_out: bool, serving: bool) -> str | None:
    """Why a trigger must wait, or None. `target_outcome` is the current version's
    build outcome (None: not started), `rolling_out` whether a canary is in flight,
    `serving` whether a stable revision serves."""
    if target_outcome is None or target_outcome == "Building":
        return "a build is in progress"
    if target_outcome == "Failed":
        return None  # a failed build holds nothing: a trigger may try again
    if rolling_out:
        return "a rollout is in progress"
    if not serving:
        return "the first revision is not serving yet"
    return None


@dataclass(frozen=True)
class Inputs:
    rebuild: Rebuild  # spec.rebuild
    last: LastRebuild | None  # status.lastRebuild
    drift: DriftStatus | None  # status.drift
    stable: str | None  # the stable revision
    started: dt.datetime | None  # when the current version's build started
    held: str | None  # busy(...)
    reading: drift_trigger.DriftReading | None  # measured before this pass, if due
    now: dt.datetime


@dataclass
class Decision:
    token: str | None  # the trigger token the target version is built for
    last: LastRebuild | None
    drift: DriftStatus | None
    next_scheduled: str | None
    events: list[Event] = field(default_factory=list)
    wake_in: list[float] = field(default_factory=list)  # seconds; the earliest wins
    fired: str | None = None  # the reason of the trigger that fired in this pass


def _scheduled(i: Inputs, out: Decision) -> LastRebuild | None:
    if i.rebuild.schedule is None:
        return None
    schedule = parse_schedule(i.rebuild.schedule)
    next_fire = schedule.next_after(i.now)
    if next_fire is not None:
        out.next_scheduled = iso(next_fire)
        out.wake_in.append(seconds_until(next_fire, i.now))
    due = due_since(schedule, i.started, i.now) if i.started is not None else None
    if due is None:
        return None
    if i.held is not None:
        out.wake_in.append(BUSY_RECHECK_SECONDS)
        return None
    missed = ""
    if due.missed > 1:
        missed = f" ({due.missed} fires since the last build, caught up as one)"
    message = f"schedule {schedule.expression!r} fired at {iso(due.latest)}{missed}"
    return LastRebuild(
        reason=names.TRIGGER_SCHEDULE, at=iso(i.now), version="", token="", fire=iso(due.latest),
        missed=due.missed, message=message,
    )  # fmt: skip


def _drifted(i: Inputs, out: Decision) -> LastRebuild | None:
    on = i.rebuild.on_drift
    if on is None or i.stable is None:
        return None
    drift = i.drift if i.drift and i.drift.revision == i.stable else None
    if i.reading is not None:
        drift, events = drift_trigger.fold(on, drift, i.reading)
        out.events.extend(events)
    out.drift = drift
    if i.held is not None:
        out.wake_in.append(BUSY_RECHECK_SECONDS)
        return None
    due = drift_trigger.next_due(on, drift, i.stable)
    out.wake_in.append(seconds_until(due, i.now) if due else duration_seconds(on.interval))
    if i.reading is None or drift is None:
        return None  # decided only on a measurement of this pass
    decided = drift_trigger.decide(on, drift, i.started, i.now)
    if decided is None:
        return None
    return LastRebuild(
        reason=names.TRIGGER_DRIFT, at=iso(i.now), version="", token="", value=decided.value,
        message=decided.message,
    )  # fmt: skip


def decide(i: Inputs, version_for: Callable[[str | None], str]) -> Decision:
    """`version_for(token)`: the version the spec and `token` name."""
    out = Decision(i.last.token if i.last else None, i.last, None, None)
    scheduled = _scheduled(i, out)
    drifted = _drifted(i, out)  # the drift is folded either way
    trigger = scheduled or drifted
    if trigger is None:
        return out
    # A schedule's token is its fire time: a pass repeated after a failed status write
    # names the same version again. (A later fire is always after the build it started.)
    token = f"{trigger.reason.lower()}@{trigger.fire or trigger.at}"
    version = version_for(token)
    out.token, out.last = token, trigger.model_copy(update={"token": token, "version": version})
    out.fired = trigger.reason
    reason = {
        names.TRIGGER_SCHEDULE: names.EVENT_SCHEDULED_REBUILD,
        names.TRIGGER_DRIFT: names.EVENT_DRIFT_REBUILD,
    }
    message = f"{trigger.message}; building version {version}"
    out.events.append(Event("Normal", reason[trigger.reason], message))
    return out
