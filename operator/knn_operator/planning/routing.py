"""The weights of a route the user owns (gatewayAPI, istio routers): what to set,
whether what was set took effect, and whether someone else changed it. Pure.

The canary's weight in the route stays 0 until one of its pods is available, so a
step never sends requests to a revision with nothing to answer them; the rollout's
step completes only once the route reads back at its weight (planning.serving).
"""

from __future__ import annotations

import datetime as dt

from knn_contracts import routing as rnames

from ..conditions import set_condition
from ..events import Event
from ..models.common import Condition
from ..models.knnindex import RouteStatus, WorkloadStatus
from ..routers.routes import RouteState
from ..routers.weighted import WeightedRouter
from .serving import ROUTE_NOT_READ, Serving
from .types import Observed, Plan

# After a write, look again this soon to verify it (routes are not watched).
VERIFY_AFTER = 1.0
# While the gateway has not accepted the route, look again this often.
RECHECK_NOT_ACCEPTED = 5.0
# Routes are not watched: during a rollout, a change by someone else is found this soon.
RECHECK_DURING_ROLLOUT = 10.0


def routing_stage(
    obs: Observed, serving: Serving, status: WorkloadStatus, now: dt.datetime, out: Plan
) -> WorkloadStatus:
    router, o = serving.router, serving.outcome
    if not isinstance(router, WeightedRouter):
        return _no_route(obs, status, out)
    t = router.target
    last = obs.status.route
    last_weight = last.weight if last and (last.kind, last.name) == (t.kind, t.name) else None
    route = RouteStatus(kind=t.kind, name=t.name, weight=last_weight)
    state = obs.route
    if o.stable is None:  # nothing serves yet: nothing to route
        return status.model_copy(update={"route": route})
    if state is None or not state.usable:
        return _unusable(obs, state, status, route, now, out)
    canary_dep = obs.deployments.get(o.canary) if o.canary else None
    live = canary_dep is not None and canary_dep.available > 0
    want = o.weight if o.canary and live else 0
    changed = _changed_by_others(state, last_weight, want)
    if changed:
        out.events.append(
            Event(
                "Warning",
                rnames.REASON_ROUTE_CHANGED,
                f"{t.title}: the canary's weight is {state.weight}%, the operator set "
                f"{last_weight}%; someone else changed it, setting {want}% again",
            )
        )
    stable_rev, canary_rev = o.stable, o.canary or o.stable
    in_sync = state.weight == want and state.consistent
    if not in_sync or not _subsets_at(state, stable_rev, canary_rev):
        out.routes.append(router.write(o.stable, o.canary, want))
        out.wake_within(VERIFY_AFTER)
        if want != last_weight:
            split = f"{stable_rev} {100 - want}%, {canary_rev} {want}%"
            out.events.append(Event("Normal", rnames.EVENT_ROUTE_UPDATED, f"{t.title}: {split}"))
    elif state.accepted is False:
        out.wake_within(RECHECK_NOT_ACCEPTED)
    if o.canary is not None:
        out.wake_within(RECHECK_DURING_ROLLOUT)
    ok, reason, message = _condition(state, want, changed, in_sync)
    conds = set_condition(
        list(status.conditions),
        rnames.CONDITION_TRAFFIC_ROUTED,
        ok,
        reason,
        message,
        obs.generation,
        now,
    )
    return status.model_copy(
        update={"route": route.model_copy(update={"weight": want}), "conditions": conds}
    )


def _changed_by_others(state: RouteState, last: int | None, want: int) -> bool:
    if last is None or state.weight is None:
        return False
    return (state.weight != last or not state.consistent) and state.weight != want


def _subsets_at(state: RouteState, stable: str, canary: str) -> bool:
    return state.subsets is None or state.subsets == (stable, canary)


def _condition(state: RouteState, want: int, changed: bool, in_sync: bool) -> tuple[bool, str, str]:
    t = state.target
    if changed:
        return (
            False,
            rnames.REASON_ROUTE_CHANGED,
            f"{t.title}: weights changed by someone else",
        )
    if not in_sync:
        return (
            False,
            rnames.REASON_ROUTE_UPDATING,
            f"{t.title}: setting the canary to {want}%",
        )
    if state.accepted is False:
        why = f"{t.title}: its gateway has not accepted generation {state.generation}"
        return False, rnames.REASON_ROUTE_NOT_ACCEPTED, why
    return True, rnames.REASON_ROUTE_IN_SYNC, f"{t.title}: the canary has {want}%"


def _unusable(
    obs: Observed,
    state: RouteState | None,
    status: WorkloadStatus,
    route: RouteStatus,
    now: dt.datetime,
    out: Plan,
) -> WorkloadStatus:
    reason = (state.reason if state else None) or rnames.REASON_ROUTE_NOT_FOUND
    message = (state.problem if state else None) or ROUTE_NOT_READ
    before = next(
        (c for c in obs.status.conditions if c.type == rnames.CONDITION_TRAFFIC_ROUTED), None
    )
    if before is None or before.status != "False" or before.message != message:
        out.events.append(Event("Warning", reason, message))
    conds = set_condition(
        list(status.conditions),
        rnames.CONDITION_TRAFFIC_ROUTED,
        False,
        reason,
        message,
        obs.generation,
        now,
    )
    return status.model_copy(update={"route": route, "conditions": conds})


def _no_route(obs: Observed, status: WorkloadStatus, out: Plan) -> WorkloadStatus:
    """Back to the replica router: the role Services and the condition go."""
    if obs.status.route is None:
        return status
    for suffix in (rnames.STABLE_SERVICE_SUFFIX, rnames.CANARY_SERVICE_SUFFIX):
        out.delete.append(("Service", obs.owner.name + suffix))
    conds: list[Condition] = [
        c for c in status.conditions if c.type != rnames.CONDITION_TRAFFIC_ROUTED
    ]
    return status.model_copy(update={"route": None, "conditions": conds})
