"""Retraining triggers of a KnnIndex (spec.rebuild.schedule, spec.rebuild.onDrift):
the KnnIndex's observation put in the kind-neutral terms of triggers.decide, which
decides. Pure.

A trigger names a token (`schedule@<fire time>`, `drift@<time>`) that goes into
the version's identity (versioning.version_of) and is kept in status.lastRebuild,
so later passes derive the same version; the new version is then built and rolled
out like any other.
"""

from __future__ import annotations

import datetime as dt
from functools import partial

from ..models.knnindex import BuildRecord, WorkloadStatus
from ..timeutil import parse_iso
from ..triggers import drift as drift_trigger
from ..triggers.decide import Decision, Inputs, busy, decide
from .builds import record
from .types import Observed, Plan


def current_version(obs: Observed) -> str:
    """The target version before any trigger of this pass."""
    last = obs.status.last_rebuild
    return obs.workload.version(obs.spec, obs.rebuild_annotation, last.token if last else None)


def _target(obs: Observed) -> BuildRecord | None:
    return record(list(obs.status.builds), current_version(obs))


def _held(status: WorkloadStatus, target: BuildRecord | None) -> str | None:
    rolling_out = status.rollout is not None or status.canary_revision is not None
    outcome = target.outcome if target else None
    return busy(outcome, rolling_out, status.stable_revision is not None)


def drift_due(obs: Observed, now: dt.datetime) -> str | None:
    """The stable revision to measure drift of now, or None (the prepare step's test)."""
    on, st = obs.spec.rebuild.on_drift, obs.status
    if on is None or st.stable_revision is None or _held(st, _target(obs)) is not None:
        return None
    due = drift_trigger.is_due(on, st.drift, st.stable_revision, now)
    return st.stable_revision if due else None


def rebuilds_stage(obs: Observed, now: dt.datetime, out: Plan) -> Decision:
    st = obs.status
    rebuild = obs.spec.rebuild
    if rebuild.schedule is None and rebuild.on_drift is None:
        last = st.last_rebuild
        return Decision(last.token if last else None, last, None, None)
    target = _target(obs)
    # Builds from before `started` was recorded fall back to when they finished.
    started = (parse_iso(target.started) or parse_iso(target.finished)) if target else None
    inputs = Inputs(
        rebuild=rebuild, last=st.last_rebuild, drift=st.drift, stable=st.stable_revision,
        started=started, held=_held(st, target), reading=obs.drift, now=now,
    )  # fmt: skip
    decision = decide(inputs, partial(obs.workload.version, obs.spec, obs.rebuild_annotation))
    out.events.extend(decision.events)
    for seconds in decision.wake_in:
        out.wake_within(seconds)
    if decision.fired is not None:
        out.triggers.append(decision.fired)
    return decision
