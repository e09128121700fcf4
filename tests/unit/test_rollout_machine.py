"""The rollout state machine, transition by transition, with the clock as data.

Each test replays a story the way the reconciler does: the outcome's state goes
back in as the next pass's state, so a test that passes here is also a restart
from status alone (nothing else carries over between passes).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace

import pytest
from knn_contracts import rollout as names
from knn_operator.models.knnindex import Pause, RolledBack, RolloutState, Step
from knn_operator.rollout.machine import (
    Actions,
    AnalysisVerdict,
    Inputs,
    Outcome,
    advance,
    analysis_due,
)

T0 = dt.datetime(2026, 12, 1, 12, 0, 0, tzinfo=dt.UTC)
STABLE, CANARY, NEWER = "v00000001-aaaaa", "v00000002-bbbbb", "v00000003-ccccc"
STEPS = (
    Step(set_weight=20),
    Step(pause=Pause(duration="60s")),
    Step(set_weight=50),
    Step(pause=Pause()),
)

NO_ACTIONS = Actions()


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def inputs(
    *,
    steps: Sequence[Step] = STEPS,
    stable: str | None = STABLE,
    target: str = CANARY,
    ready: bool = True,
    canary_at: int = 0,  # the canary is fully available up to this weight
    state: RolloutState | None = None,
    rolled_back: RolledBack | None = None,
    actions: Actions = NO_ACTIONS,
    analysis: AnalysisVerdict | None = None,
    interval: float | None = None,
    now: dt.datetime = T0,
) -> Inputs:
    return Inputs(
        steps=steps,
        stable=stable,
        target=target,
        target_ready=ready,
        canary_ready=lambda w: w <= canary_at,
        state=state,
        rolled_back=rolled_back,
        actions=actions,
        analysis=analysis,
        analysis_interval=interval,
        now=now,
    )


def reasons(o: Outcome) -> list[str]:
    return [e.reason for e in o.events]


def then(o: Outcome, i: Inputs, **changes: object) -> Inputs:
    """The next pass: only what status keeps carries over. `canary_at=W` says the
    canary is now available up to weight W."""
    if "canary_at" in changes:
        w = int(str(changes.pop("canary_at")))
        changes["canary_ready"] = lambda weight: weight <= w
    nxt = replace(i, stable=o.stable, state=o.state, rolled_back=o.rolled_back)
    return replace(nxt, **changes)  # type: ignore[arg-type]


def test_the_first_revision_goes_straight_to_full_size_and_serves_when_available() -> None:
    o = advance(inputs(stable=None, ready=False))
    assert (o.stable, o.canary, o.weight) == (None, None, 0)
    o = advance(inputs(stable=None))
    assert (o.stable, o.canary, o.weight, o.state) == (None, CANARY, 100, None)
    o = advance(inputs(stable=None, canary_at=100))
    assert (o.stable, o.canary) == (CANARY, None)
    assert reasons(o) == [names.EVENT_PROMOTED]


def test_steps_in_order_with_a_timed_and_an_indefinite_pause() -> None:
    i = inputs()
    o = advance(i)
    assert reasons(o) == [names.EVENT_ROLLOUT_STARTED]
    assert (o.stable, o.canary, o.weight) == (STABLE, CANARY, 20)
    assert o.state is not None and o.state.step == 0 and o.requeue_after is None

    o = advance(then(o, i, canary_at=20, now=at(10)))  # weight 20 reached
    assert o.state is not None and o.state.step == 1 and o.weight == 20
    assert o.requeue_after == 60.0  # the pause runs from when its step began
    assert reasons(o) == [names.EVENT_STEP]

    o = advance(then(o, i, canary_at=20, now=at(40)))
    assert o.state is not None and o.state.step == 1 and o.requeue_after == 30.0 and not o.events

    o = advance(then(o, i, canary_at=20, now=at(70)))  # pause over → weight 50
    assert o.state is not None and o.state.step == 2 and o.weight == 50

    o = advance(then(o, i, canary_at=50, now=at(80)))  # reached → indefinite pause
    assert o.state is not None and o.state.step == 3 and o.state.paused_reason
    assert reasons(o) == [names.EVENT_STEP, names.EVENT_PAUSED]
    held = advance(then(o, i, canary_at=50, now=at(9999)))
    assert held.state == o.state and not held.events  # waits however long, says it once

    o = advance(then(o, i, canary_at=50, now=at(90), actions=Actions(promote=True)))
    assert (o.stable, o.canary, o.promoted_from) == (CANARY, None, STABLE)
    assert o.handled.promote and reasons(o)[-1] == names.EVENT_PROMOTED


def test_a_pause_that_ended_while_the_operator_was_down_is_walked_in_one_pass() -> None:
    state = RolloutState(
        revision=CANARY,
        started_at="2026-12-01T11:00:00Z",
        step=1,
        step_started_at="2026-12-01T11:00:00Z",
        weight=20,
    )
    o = advance(inputs(state=state, canary_at=50, now=at(0)))  # an hour after the pause began
    assert o.state is not None and o.state.step == 3 and o.state.paused_reason
    assert reasons(o) == [names.EVENT_STEP, names.EVENT_STEP, names.EVENT_PAUSED]


def test_a_damaged_step_start_restarts_the_pause_rather_than_failing() -> None:
    state = RolloutState(
        revision=CANARY, started_at="x", step=1, step_started_at="not a time", weight=20
    )
    o = advance(inputs(state=state, canary_at=20))
    assert o.state is not None and o.state.step == 1 and o.requeue_after == 60.0


def test_promote_skips_one_step() -> None:
    o = advance(inputs(actions=Actions(promote=True)))  # skips setWeight 20 unreached
    assert o.state is not None and o.state.step == 1 and o.handled.promote


def test_without_steps_the_target_replaces_stable_once_available_and_says_so() -> None:
    i = inputs(steps=())
    o = advance(i)
    assert reasons(o) == [names.EVENT_NO_STEPS] and o.weight == 100 and o.canary == CANARY
    o = advance(then(o, i, canary_at=100))
    assert (o.stable, o.promoted_from) == (CANARY, STABLE)


def test_user_abort_rolls_back_in_one_pass_and_holds_until_retry() -> None:
    i = inputs(canary_at=20)
    o = advance(i)
    o = advance(then(o, i, actions=Actions(abort=True), now=at(5)))
    assert (o.stable, o.canary, o.weight, o.state) == (STABLE, None, 0, None)
    assert o.rolled_back is not None and o.rolled_back.cause == names.CAUSE_USER
    assert o.aborted == CANARY and o.handled.abort
    assert reasons(o) == [names.EVENT_ROLLED_BACK]

    held = advance(then(o, i, now=at(500)))  # same spec: not retried
    assert held.canary is None and held.rolled_back == o.rolled_back and not held.events

    retried = advance(then(o, i, actions=Actions(retry=True), now=at(600)))
    assert retried.rolled_back is None and retried.handled.retry
    assert retried.state is not None and retried.state.step == 1  # from step 0 again
    assert reasons(retried)[:2] == [names.EVENT_RETRY, names.EVENT_ROLLOUT_STARTED]


def test_a_new_spec_clears_the_rollback() -> None:
    rb = RolledBack(revision=CANARY, cause=names.CAUSE_USER, message="m", at="t")
    o = advance(inputs(target=NEWER, rolled_back=rb))
    assert o.rolled_back is None and o.canary == NEWER
    back = advance(inputs(target=STABLE, rolled_back=rb))  # or the spec went back to stable
    assert back.rolled_back is None and back.canary is None


def test_a_spec_change_mid_rollout_supersedes_the_canary() -> None:
    i = inputs(canary_at=50, now=at(100))
    state = RolloutState(revision=CANARY, started_at="t", step=3, weight=50, paused_reason="p")
    o = advance(replace(i, target=NEWER, state=state, canary_ready=lambda w: w <= 0))
    assert o.superseded == CANARY and o.canary == NEWER
    assert o.state is not None and o.state.step == 0 and o.state.paused_reason is None
    assert reasons(o) == [names.EVENT_SUPERSEDED, names.EVENT_ROLLOUT_STARTED]
    waiting = advance(replace(i, target=NEWER, target_ready=False, state=state))
    assert waiting.superseded == CANARY and waiting.canary is None  # new one still builds
    reverted = advance(replace(i, target=STABLE, state=state))
    assert reverted.superseded == CANARY and reverted.canary is None and reverted.state is None


def _analysed(
    steps: Sequence[Step] = (Step(set_weight=50),), interval: float = 30.0
) -> tuple[Inputs, Outcome]:
    i = inputs(steps=steps, interval=interval, canary_at=50)
    return i, advance(i)


def test_analysis_starts_with_traffic_and_promotion_waits_for_a_counted_run() -> None:
    i, o = _analysed()
    assert o.state is not None and o.state.next_analysis_at == "2026-12-01T12:00:30Z"
    assert o.canary == CANARY and o.requeue_after == 30.0  # steps done, no run yet
    assert not analysis_due(o.state, at(29)) and analysis_due(o.state, at(30))
    nothing = AnalysisVerdict("Continue", "no data yet", counted=False)
    o = advance(then(o, i, analysis=nothing, now=at(30)))
    assert o.canary == CANARY and o.state is not None and o.state.analysis_runs == 0
    assert o.state.next_analysis_at == "2026-12-01T12:01:00Z"
    good = AnalysisVerdict("Continue", "all checks passed", counted=True)
    o = advance(then(o, i, analysis=good, now=at(60)))
    assert (o.stable, o.promoted_from) == (CANARY, STABLE)


@pytest.mark.parametrize(
    ("cause", "counted"), [(names.CAUSE_ANALYSIS, True), (names.CAUSE_INCONCLUSIVE, False)]
)
def test_analysis_abort_rolls_back_with_the_reason(cause: str, counted: bool) -> None:
    i, o = _analysed((Step(set_weight=20), Step(pause=Pause())))
    why = "recall 0.81 < minRecall 0.9 (failures 1 > failureLimit 0)"
    bad = AnalysisVerdict("Abort", why, counted=counted, cause=cause)
    o = advance(then(o, i, analysis=bad, now=at(30)))
    assert o.rolled_back is not None and o.rolled_back.cause == cause
    assert why in o.rolled_back.message and o.weight == 0 and o.canary is None


def test_inconclusive_analysis_can_hold_the_rollout_until_promote_resumes_it() -> None:
    i, o = _analysed((Step(set_weight=20), Step(pause=Pause(duration="10s"))))
    hold = AnalysisVerdict("Pause", "3 inconclusive runs (inconclusiveLimit 2)", counted=False)
    o = advance(then(o, i, analysis=hold, now=at(30)))
    assert o.state is not None and o.state.paused_reason and o.canary == CANARY
    assert names.EVENT_PAUSED in reasons(o)
    still = advance(then(o, i, now=at(100)))  # pause step long over: still held
    assert still.state is not None and still.state.step == 1 and still.state.paused_reason
    o = advance(then(o, i, actions=Actions(promote=True), now=at(101)))
    assert o.state is not None and o.state.paused_reason is None
    assert o.state.step == 2  # resumed; the timed pause had ended, so it completes too


def test_the_first_analysis_waits_for_the_canary_to_take_its_traffic() -> None:
    i = inputs(steps=(Step(set_weight=50),), interval=30.0, canary_at=0)
    o = advance(i)
    assert o.state is not None and o.state.next_analysis_at is None and o.requeue_after is None
    o = advance(then(o, i, canary_at=50, now=at(12)))  # its pods are up 12 s later
    assert o.state is not None and o.state.next_analysis_at == "2026-12-01T12:00:42Z"
