"""The rollout state machine: which revision is stable, which is the canary, what
weight the steps ask for, and when to promote or abort. Pure: no I/O, the clock
comes in as data, and every piece of state lives in the status it returns, so a
restarted operator continues from status alone.

One pass may walk several steps (a weight already reached, then a pause that
ended while the operator was down). Steps: `setWeight` completes when the
canary is available at that weight; `pause` completes when its duration has
passed since the step began, or on `knn.dev/promote` when it has none.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from knn_contracts import rollout as names

from ..events import Event
from ..models.knnindex import RolledBack, RolloutState, Step
from ..timeutil import duration_seconds, iso, parse_iso, seconds_until

Decision = Literal["Continue", "Pause", "Abort"]
FULL_WEIGHT = 100


@dataclass(frozen=True)
class Actions:
    """Action annotations whose value is new since the operator last acted on it."""

    promote: bool = False
    abort: bool = False
    retry: bool = False


@dataclass(frozen=True)
class AnalysisVerdict:
    """What an analysis run taken in this pass concluded (analysis.assess)."""

    decision: Decision
    reason: str  # which check, which value, which limit
    counted: bool  # some check gave a pass or a fail (not only no data / errors)
    cause: str = names.CAUSE_ANALYSIS  # for Abort: AnalysisFailed | AnalysisInconclusive


@dataclass(frozen=True)
class Inputs:
    steps: Sequence[Step]
    stable: str | None
    target: str  # the revision the spec asks for
    target_ready: bool  # built, and its serving spec accepted: it may take traffic
    # Whether the target's Deployment is fully available at the replicas a weight needs.
    canary_ready: Callable[[int], bool]
    state: RolloutState | None
    rolled_back: RolledBack | None
    actions: Actions
    analysis: AnalysisVerdict | None  # a run measured in this pass, if one was due
    analysis_interval: float | None  # seconds; None when no analysis is configured
    now: dt.datetime


@dataclass(frozen=True)
class Outcome:
    stable: str | None
    canary: str | None
    weight: int  # what the canary should get; 0 when there is none
    state: RolloutState | None
    rolled_back: RolledBack | None
    promoted_from: str | None = None  # the stable this pass replaced
    superseded: str | None = None  # a canary this pass dropped because the spec moved on
    aborted: str | None = None  # a canary this pass rolled back
    events: tuple[Event, ...] = ()
    requeue_after: float | None = None
    handled: Actions = field(default_factory=Actions)  # actions this pass consumed


def advance(i: Inputs) -> Outcome:
    if i.stable is None:
        return _first(i)
    superseded: str | None = None
    events: list[Event] = []
    state = i.state
    if state is not None and state.revision != i.target:
        superseded, state = state.revision, None
        events.append(
            Event(
                "Normal",
                names.EVENT_SUPERSEDED,
                f"canary {superseded} is superseded by {i.target} (the spec changed)",
            )
        )
    # A rollback holds until the spec asks for another revision or the user retries.
    rolled_back = i.rolled_back if i.rolled_back and i.rolled_back.revision == i.target else None
    retried = False
    if i.target != i.stable and rolled_back is not None and i.actions.retry:
        events.append(
            Event("Normal", names.EVENT_RETRY, f"retrying revision {i.target} (knn.dev/retry)")
        )
        rolled_back, retried = None, True
    if i.target == i.stable or rolled_back is not None or not i.target_ready:
        return Outcome(
            i.stable,
            None,
            0,
            None,
            rolled_back,
            superseded=superseded,
            events=tuple(events),
            handled=Actions(retry=retried),
        )
    return _run(i, state, superseded, events, Actions(retry=retried))


def _first(i: Inputs) -> Outcome:
    """Nothing serves yet: the first revision goes straight to full size, no steps."""
    if not i.target_ready:
        return Outcome(None, None, 0, None, i.rolled_back)
    if i.canary_ready(FULL_WEIGHT):
        msg = f"revision {i.target} is available and now serves"
        return Outcome(
            i.target, None, 0, None, None, events=(Event("Normal", names.EVENT_PROMOTED, msg),)
        )
    return Outcome(None, i.target, FULL_WEIGHT, None, i.rolled_back)


def _run(
    i: Inputs,
    state: RolloutState | None,
    superseded: str | None,
    events: list[Event],
    handled: Actions,
) -> Outcome:
    steps: Sequence[Step] = i.steps or (Step(set_weight=FULL_WEIGHT),)
    if state is None:
        state = RolloutState(revision=i.target, started_at=iso(i.now), step_started_at=iso(i.now))
        events.append(_started(i, steps))
    if i.actions.abort:
        why = "aborted by the user (knn.dev/abort)"
        return _abort(i, names.CAUSE_USER, why, superseded, events, replace(handled, abort=True))
    state = _fold_verdict(i, state, events)
    if i.analysis is not None and i.analysis.decision == "Abort":
        return _abort(i, i.analysis.cause, i.analysis.reason, superseded, events, handled)
    promote = i.actions.promote
    if promote:
        handled = replace(handled, promote=True)
    if state.paused_reason is not None and promote:
        resumed = f"canary {i.target} resumed by knn.dev/promote ({state.paused_reason})"
        events.append(Event("Normal", names.EVENT_STEP, resumed))
        # Promote ends an indefinite pause step; a hold by analysis only resumes.
        promote = _at_indefinite_pause(steps, state)
        state = state.model_copy(update={"paused_reason": None})
    state, wait = _walk(i, steps, state, promote, events)
    state, due = _schedule(i, state)
    requeue = _earliest(due, wait)
    # With analysis, zero measurements never count as a pass: promotion waits for a run.
    measured = i.analysis_interval is None or state.analysis_runs > 0
    if state.step >= len(steps) and state.paused_reason is None and measured:
        return _promote(i, superseded, events, handled)
    return Outcome(
        i.stable,
        i.target,
        state.weight,
        state,
        None,
        superseded=superseded,
        events=tuple(events),
        requeue_after=requeue,
        handled=handled,
    )


def _at_indefinite_pause(steps: Sequence[Step], state: RolloutState) -> bool:
    if state.step >= len(steps):
        return False
    s = steps[state.step]
    return s.pause is not None and s.pause.duration is None


def _started(i: Inputs, steps: Sequence[Step]) -> Event:
    if not i.steps:
        return Event(
            "Normal",
            names.EVENT_NO_STEPS,
            f"spec.rollout.steps is empty: revision {i.target} replaces {i.stable}"
            " as soon as it is available",
        )
    return Event(
        "Normal",
        names.EVENT_ROLLOUT_STARTED,
        f"canary {i.target} starts {len(steps)} steps against stable {i.stable}",
    )


def _walk(
    i: Inputs, steps: Sequence[Step], state: RolloutState, promote: bool, events: list[Event]
) -> tuple[RolloutState, float | None]:
    """Complete every step that can complete now; say when to look again."""
    while state.step < len(steps) and state.paused_reason is None:
        s = steps[state.step]
        if s.set_weight is not None:
            state = state.model_copy(update={"weight": s.set_weight})
            if not (promote or i.canary_ready(s.set_weight)):
                return state, None  # the canary's Deployment event wakes us
            done = f"weight {s.set_weight}% reached"
        else:
            started = parse_iso(state.step_started_at) or i.now
            duration = s.pause.duration if s.pause else None
            if duration is None and not promote:
                reason = f"paused at step {state.step + 1} until knn.dev/promote"
                events.append(Event("Normal", names.EVENT_PAUSED, reason))
                return state.model_copy(update={"paused_reason": reason}), None
            if duration is not None and not promote:
                end = started + dt.timedelta(seconds=duration_seconds(duration))
                if i.now < end:
                    return state, seconds_until(end, i.now)
            done = "pause ended"
        if promote:
            done, promote = "skipped by knn.dev/promote", False
        where = f"canary {i.target}: step {state.step + 1}/{len(steps)}"
        events.append(Event("Normal", names.EVENT_STEP, f"{where}: {done}"))
        state = state.model_copy(update={"step": state.step + 1, "step_started_at": iso(i.now)})
    return state, None


def _fold_verdict(i: Inputs, state: RolloutState, events: list[Event]) -> RolloutState:
    """Count this pass's analysis run; inconclusive results may hold the rollout."""
    if i.analysis is None or i.analysis_interval is None:
        return state
    update: dict[str, object] = {
        "next_analysis_at": iso(i.now + dt.timedelta(seconds=i.analysis_interval))
    }
    # Promotion needs the latest run to have passed: any other run resets the count.
    passed = i.analysis.counted and i.analysis.decision == "Continue"
    update["analysis_runs"] = state.analysis_runs + 1 if passed else 0
    if i.analysis.decision == "Pause" and state.paused_reason is None:
        update["paused_reason"] = i.analysis.reason
        held = f"canary {i.target}: {i.analysis.reason}"
        events.append(Event("Warning", names.EVENT_PAUSED, held))
    return state.model_copy(update=update)


def _schedule(i: Inputs, state: RolloutState) -> tuple[RolloutState, float | None]:
    """Analysis runs every interval from the moment the canary takes traffic."""
    if i.analysis_interval is None:
        return state, None
    # The first run comes an interval after the canary takes its traffic, not before:
    # a run while its pods start would only find no data.
    if state.next_analysis_at is None and state.weight > 0 and i.canary_ready(state.weight):
        first = i.now + dt.timedelta(seconds=i.analysis_interval)
        state = state.model_copy(update={"next_analysis_at": iso(first)})
    due = parse_iso(state.next_analysis_at)
    return state, (seconds_until(due, i.now) if due is not None else None)


def analysis_due(state: RolloutState | None, now: dt.datetime) -> bool:
    """Whether the reconciler should measure before planning this pass."""
    if state is None:
        return False
    due = parse_iso(state.next_analysis_at)
    return due is not None and due <= now


def _promote(i: Inputs, superseded: str | None, events: list[Event], handled: Actions) -> Outcome:
    events.append(
        Event(
            "Normal",
            names.EVENT_PROMOTED,
            f"revision {i.target} completed its steps and is now stable (was {i.stable})",
        )
    )
    return Outcome(
        i.target,
        None,
        0,
        None,
        None,
        promoted_from=i.stable,
        superseded=superseded,
        events=tuple(events),
        handled=handled,
    )


def _abort(
    i: Inputs,
    cause: str,
    why: str,
    superseded: str | None,
    events: list[Event],
    handled: Actions,
) -> Outcome:
    message = f"canary {i.target} rolled back, all traffic to {i.stable}: {why}"
    events.append(Event("Warning", names.EVENT_ROLLED_BACK, message))
    rolled = RolledBack(revision=i.target, cause=cause, message=message, at=iso(i.now))
    return Outcome(
        i.stable,
        None,
        0,
        None,
        rolled,
        superseded=superseded,
        aborted=i.target,
        events=tuple(events),
        handled=handled,
    )


def _earliest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else min(a, b)
