"""The status a pass leaves: phase, conditions, revisions, rollout and the recall of
what serves. Pure.

Phases read as a user expects: while a stable revision serves, a failed rebuild
or a rolled-back canary is not `Failed` (the Built condition and the message
say what went wrong); `Failed` means nothing serves and the target cannot.
"""

from __future__ import annotations

import datetime as dt

from knn_contracts import api
from knn_contracts import rollout as names
from knn_contracts import status as cond_names

from ..conditions import set_condition
from ..efsearch import Verdict
from ..events import Event
from ..models.common import Condition
from ..models.knnindex import (
    BuildRecord,
    HandledActions,
    Phase,
    RevisionRecord,
    WorkloadStatus,
)
from .builds import record
from .serving import Serving, route_blocked, router_unavailable
from .types import Observed, Plan


def _phase(obs: Observed, serving: Serving, stable_ok: bool) -> Phase:
    o, target = serving.outcome, serving.target
    if o.stable is None:
        if target.outcome == "Failed" or serving.refused:
            return "Failed"
        if o.canary:
            return "Progressing"
        return "Building" if target.outcome == "Building" else "Pending"
    if not stable_ok:
        was_serving = obs.status.phase in ("Serving", "Degraded", "RolledBack")
        return "Degraded" if was_serving else "Progressing"
    if o.rolled_back is not None:
        return "RolledBack"
    if o.canary is not None or target.outcome == "Building":
        return "Progressing"
    return "Serving"


def stalled(obs: Observed, serving: Serving) -> str | None:
    """Why the revision being rolled out (a canary, or the first revision) cannot become
    available, as its Deployment says; None while it progresses."""
    o = serving.outcome
    rev = o.canary if o.canary is not None else serving.target_revision.revision
    if rev == o.stable or o.rolled_back is not None:
        return None
    dep = obs.deployments.get(rev)
    if dep is None or not dep.stalled or dep.is_available:
        return None
    return f"revision {rev} cannot become available: Deployment {dep.name} {dep.stalled}"


def _progressing(obs: Observed, serving: Serving) -> tuple[bool, str, str]:
    o, rev = serving.outcome, serving.target_revision.revision
    if o.rolled_back is not None:
        return False, names.REASON_ROLLED_BACK, o.rolled_back.message
    why = stalled(obs, serving)
    if why is not None:
        return False, names.REASON_REVISION_STALLED, why
    if o.state is not None and o.state.paused_reason:
        return True, names.REASON_PAUSED, o.state.paused_reason
    if o.canary is not None:
        return True, names.REASON_CANARY, f"revision {o.canary} at weight {o.weight}%"
    if serving.target.outcome == "Building":
        return True, names.REASON_NEW_VERSION, f"building version {serving.target.version}"
    if serving.target.outcome == "Failed" and rev != o.stable:
        return False, names.REASON_BUILD_FAILED, serving.target.message
    return False, names.REASON_STABLE, "no rollout in progress"


def _conditions(
    obs: Observed, serving: Serving, stable_ok: bool, phase: Phase, now: dt.datetime, out: Plan
) -> list[Condition]:
    old, gen, target, stable = obs.status, obs.generation, serving.target, serving.outcome.stable
    built = {"Succeeded": True, "Failed": False, "Building": None}[target.outcome]
    reason = {"Succeeded": "BuildSucceeded", "Failed": "BuildFailed", "Building": "Building"}
    if target.outcome == "Building" and target.message:
        reason["Building"] = "BuilderPodWaiting"
    conds = set_condition(
        list(old.conditions),
        cond_names.CONDITION_BUILT,
        built,
        reason[target.outcome],
        target.message or f"version {target.version}",
        gen,
        now,
    )
    conds = set_condition(
        conds,
        cond_names.CONDITION_READY,
        stable_ok,
        "Available" if stable_ok else ("NoStableVersion" if stable is None else "Unavailable"),
        f"revision {stable} serves traffic" if stable_ok else "no revision is available to serve",
        gen,
        now,
    )
    conds = _serving_spec_condition(conds, old.conditions, serving.verdict, gen, now, out)
    progressing, why, message = _progressing(obs, serving)
    before = next((c for c in old.conditions if c.type == cond_names.CONDITION_PROGRESSING), None)
    if why == names.REASON_REVISION_STALLED and (before is None or before.message != message):
        out.events.append(Event("Warning", names.REASON_REVISION_STALLED, message))
    conds = set_condition(
        conds, cond_names.CONDITION_PROGRESSING, progressing, why, message, gen, now
    )
    degraded = stable is not None and not stable_ok and phase == "Degraded"
    return set_condition(
        conds,
        cond_names.CONDITION_DEGRADED,
        degraded,
        "StableUnavailable" if degraded else "AsExpected",
        f"revision {stable} has too few available replicas" if degraded else "",
        gen,
        now,
    )


def status_stage(
    obs: Observed,
    builds: list[BuildRecord],
    serving: Serving,
    revisions: list[RevisionRecord],
    now: dt.datetime,
    out: Plan,
) -> WorkloadStatus:
    o, old = serving.outcome, obs.status
    stable_dep = obs.deployments.get(o.stable) if o.stable else None
    stable_ok = stable_dep is not None and stable_dep.is_serving
    phase = _phase(obs, serving, stable_ok)
    conds = _conditions(obs, serving, stable_ok, phase, now, out)
    # A transition already announced under the phase's name (RolledBack), or by the
    # Event that caused it (BuildStarted for Building), is not repeated: one Event
    # for a new object, not two (Events are a third of its API writes at scale).
    announced = {e.reason for e in out.events}
    if "BuildStarted" in announced:
        announced.add("Building")
    if phase != old.phase and phase not in announced:
        kind = "Warning" if phase in ("Failed", "Degraded", "RolledBack") else "Normal"
        out.events.append(Event(kind, phase, f"phase {old.phase or 'none'} → {phase}"))
    by_rev = {r.revision: r for r in revisions}
    stable_rev = by_rev.get(o.stable) if o.stable else None
    stable_build = record(builds, stable_rev.version) if stable_rev else None
    canary_rev = by_rev.get(o.canary) if o.canary else None
    common = dict(
        phase=phase,
        observed_generation=obs.generation,
        stable_version=stable_rev.version if stable_rev else None,
        stable_revision=o.stable,
        # The first revision of an index deploys without a stable: not a canary.
        canary_version=canary_rev.version if canary_rev and o.stable else None,
        canary_revision=o.canary if o.stable else None,
        canary_weight=_delivered(obs, serving) if o.canary and o.stable else None,
        current_step=o.state.step if o.state else None,
        target_version=serving.target.version,
        target_revision=serving.target_revision.revision,
        builds=builds,
        revisions=revisions,
        rollout=o.state,
        rolled_back=o.rolled_back,
        handled_actions=_handled(obs),
        # Kept after the rollout ends: what a promotion or a rollback was judged on.
        analysis=obs.analysis_status or old.analysis,
        conditions=conds,
        message=_message(obs, serving, stable_rev),
    )
    return obs.workload.status(common, old, stable_build, stable_rev)


def _delivered(obs: Observed, serving: Serving) -> int:
    o = serving.outcome
    if serving.router is None or o.stable is None or o.canary is None:
        return 0
    s, c = obs.deployments.get(o.stable), obs.deployments.get(o.canary)
    return serving.router.delivered(s.available if s else 0, c.available if c else 0, o.weight)


def _handled(obs: Observed) -> HandledActions:
    """Every action value seen is recorded as handled, used or not (a promote with
    nothing to promote must not fire later, when the user no longer expects it)."""
    a = obs.annotations
    return HandledActions(
        promote=a.get(api.ANNOTATION_PROMOTE) or obs.status.handled_actions.promote,
        abort=a.get(api.ANNOTATION_ABORT) or obs.status.handled_actions.abort,
        retry=a.get(api.ANNOTATION_RETRY) or obs.status.handled_actions.retry,
        # A rebuild value is part of the version's identity: it is handled by building it.
        rebuild=obs.rebuild_annotation,
    )


def _message(obs: Observed, serving: Serving, stable: RevisionRecord | None) -> str | None:
    o, target = serving.outcome, serving.target
    if o.rolled_back is not None:
        return o.rolled_back.message
    if serving.refused and serving.verdict is not None:
        if stable is None:
            return serving.verdict.message
        keeps = f"; revision {stable.revision} keeps serving at efSearch {stable.ef_search}"
        return serving.verdict.message + keeps
    if target.outcome in ("Failed", "Building") and target.message:
        return target.message
    why = stalled(obs, serving)
    if why is not None:
        return why
    waiting = o.stable is not None and o.canary is None and serving.target_ready
    if waiting and serving.target_revision.revision != o.stable and route_blocked(obs):
        return router_unavailable(obs)
    return None


def _serving_spec_condition(
    conds: list[Condition],
    before_all: list[Condition],
    verdict: Verdict | None,
    gen: int,
    now: dt.datetime,
    out: Plan,
) -> list[Condition]:
    """ServingSpecAccepted, and a Warning Event when a refusal is new or changes."""
    kind = cond_names.CONDITION_SERVING_SPEC_ACCEPTED
    if verdict is None:
        why = "the target version is not built"
        return set_condition(conds, kind, None, cond_names.REASON_NOT_BUILT, why, gen, now)
    if not verdict.accepted:
        before = next((c for c in before_all if c.type == kind), None)
        if before is None or before.status != "False" or before.message != verdict.message:
            out.events.append(Event("Warning", cond_names.EVENT_EF_SEARCH_REFUSED, verdict.message))
    return set_condition(conds, kind, verdict.accepted, verdict.reason, verdict.message, gen, now)
