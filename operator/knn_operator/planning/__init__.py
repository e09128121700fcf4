"""Decide, from what is observed, what a KnnIndex or a ClusterModel needs (the
kinds differ only in their workload: workload.py). Pure: no I/O, no clock.

The planner is level-based: given the spec, the last status and the owned
objects as they are now, it returns the objects to apply, those to delete, the
new status, the Events for transitions and when it wants to look again.
Running it twice on the same input gives the same plan, which is what makes a
restarted operator resume from status alone.

Stages, each a small pure function: rebuild triggers (schedule, drift) → builds
(Jobs and build records) → serving
(target revision, rollout state machine) → revisions (their roles) → sizes
(replicas, the autoscaler) → retention (Deployments, Services, deletions,
artifacts) → status → routing (the weights of a route the user owns).
"""

from __future__ import annotations

import datetime as dt

from ..events import Event
from ..settings import Settings
from .budgets import budgets_stage
from .builds import builds_stage
from .outcomes import outcomes_stage
from .rebuilds import rebuilds_stage
from .retention import retention_stage, revisions_stage, sizes_stage
from .routing import routing_stage
from .serving import serving_stage
from .status import status_stage
from .types import Observed, Plan

__all__ = ["Event", "Observed", "Plan", "plan"]


def plan(obs: Observed, settings: Settings, now: dt.datetime) -> Plan:
    out = Plan()
    rebuilds = rebuilds_stage(obs, now, out)
    target, builds = builds_stage(obs, settings, now, out, rebuilds.token)
    serving = serving_stage(obs, builds, target, settings, now, out)
    serving = outcomes_stage(obs, serving, now, out)
    revisions = revisions_stage(obs, builds, serving, now, out)
    revisions, sizes = sizes_stage(obs, serving, revisions, out)
    revisions = budgets_stage(obs, revisions, sizes, out)
    builds = retention_stage(obs, builds, serving, revisions, sizes, settings, out)
    status = status_stage(obs, builds, serving, revisions, now, out)
    status = status.model_copy(
        update={
            "last_rebuild": rebuilds.last,
            "next_scheduled_rebuild": rebuilds.next_scheduled,
            "drift": rebuilds.drift,
        }
    )
    out.status = routing_stage(obs, serving, status, now, out)
    return out
