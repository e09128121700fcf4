"""What runs and what is kept: the revision records, each revision's Deployment at
the replicas its role and the router ask for, the Services, and what is deleted.
Pure."""

from __future__ import annotations

import datetime as dt

from knn_contracts import rollout as names
from knn_contracts.identity import version_of_revision

from ..builders.autoscaler import autoscaler, replicas_only
from ..builders.common import deployment_name
from ..builders.deployment import serving_deployment
from ..builders.service import revision_service
from ..events import Event
from ..models.knnindex import BuildRecord, RevisionRecord, RevisionState
from ..routers.replicas import ReplicaRouter
from ..routers.weighted import WeightedRouter
from ..settings import Settings
from ..timeutil import iso, parse_iso, seconds_until
from .budgets import has_deployment
from .builds import collect_artifacts, kept_versions, record
from .serving import Serving, stable_size
from .types import Observed, Plan

LIVE: frozenset[str] = frozenset(
    {names.REVISION_STABLE, names.REVISION_CANARY, names.REVISION_WARM}
)
MAX_REVISION_RECORDS = 20


def _legacy(
    obs: Observed, builds: list[BuildRecord], serving: Serving, revision: str
) -> RevisionRecord:
    """A stable from before revisions were recorded: its Deployment was made from
    the spec, at the efSearch status says it served with."""
    rec = record(builds, version_of_revision(revision))
    served = getattr(obs.status, "serving_ef_search", None)  # an index's only
    ef = served or (rec.ef_search if rec else None) or obs.workload.serving_parameter(obs.spec)
    return serving.target_revision.model_copy(
        update={"revision": revision, "version": version_of_revision(revision), "ef_search": ef}
    )


def revisions_stage(
    obs: Observed,
    builds: list[BuildRecord],
    serving: Serving,
    now: dt.datetime,
    out: Plan,
) -> list[RevisionRecord]:
    """status.revisions after this pass's decision: each revision's role, Warm timers."""
    o = serving.outcome
    recs = {r.revision: r for r in obs.status.revisions}
    for rev in (o.stable, o.promoted_from):
        if rev is not None and rev not in recs:
            recs[rev] = _legacy(obs, builds, serving, rev)
    if o.canary is not None and o.canary not in recs:
        recs[o.canary] = serving.target_revision

    def mark(rev: str | None, state: RevisionState, **extra: str | None) -> None:
        if rev is None or rev not in recs:
            return
        old = recs[rev]
        since = old.since if old.state == state else iso(now)
        recs[rev] = old.model_copy(update={"state": state, "since": since, **extra})

    for r in list(recs.values()):  # a role nobody holds any more
        if r.state in (names.REVISION_STABLE, names.REVISION_CANARY) and r.revision not in (
            o.stable,
            o.canary,
        ):
            mark(r.revision, "Retired")
    keeps_warm = serving.router is not None and serving.router.keeps_warm
    if o.promoted_from is not None:
        if keeps_warm:
            until = now + dt.timedelta(seconds=obs.spec.rollout.scale_down_delay_seconds)
            mark(o.promoted_from, "Warm", scale_down_at=iso(until))
        else:
            mark(o.promoted_from, "Retired")
    mark(o.superseded, "Superseded")
    mark(o.aborted, "RolledBack")
    mark(o.canary, "Canary")
    mark(o.stable, "Stable")
    for r in list(recs.values()):
        if r.state == names.REVISION_WARM:
            end = parse_iso(r.scale_down_at) or now
            if end <= now:
                mark(r.revision, "Retired", scale_down_at=None)
                done = f"revision {r.revision} scaled to zero"
                out.events.append(Event("Normal", names.EVENT_SCALED_DOWN, done))
            else:
                out.wake_within(seconds_until(end, now))
    return _bounded(list(recs.values()), obs.spec.history.limit)


def _bounded(recs: list[RevisionRecord], limit: int) -> list[RevisionRecord]:
    """Live revisions, then the most recent others while the total is within
    history.limit (live ones count: a limit of 1 keeps only what serves)."""
    live = [r for r in recs if r.state in LIVE]
    rest = sorted((r for r in recs if r.state not in LIVE), key=lambda r: r.since)
    room = max(0, min(limit, MAX_REVISION_RECORDS) - len(live))
    return live + (rest[-room:] if room else [])


def sizes_stage(
    obs: Observed, serving: Serving, revisions: list[RevisionRecord], out: Plan
) -> tuple[list[RevisionRecord], dict[str, int | None]]:
    """Replicas of each revision (None: left to the autoscaler), the autoscaler
    itself, and the hand-over of the stable's replica count to it."""
    o, owner, auto = serving.outcome, obs.owner, obs.spec.serving.autoscaling
    router = serving.router or ReplicaRouter()
    n = stable_size(obs)
    had_autoscaler = any(r.autoscaled for r in revisions)
    sizes: dict[str, int | None] = {}
    recs: list[RevisionRecord] = []
    for rec in revisions:
        size: int | None
        if rec.state == names.REVISION_CANARY:
            size = n if o.stable is None else router.split(n, o.weight).canary
        elif rec.state == names.REVISION_STABLE:
            size = router.split(n, o.weight).stable if o.canary else n
        elif rec.state == names.REVISION_WARM:
            size = n
        else:
            size = _draining(obs, serving, rec.revision)
        autoscaled = auto is not None and rec.state == names.REVISION_STABLE
        if autoscaled and rec.autoscaled:
            size = None
        elif autoscaled:
            out.handover.append(replicas_only(owner, rec.revision, size or 1))
        sizes[rec.revision] = size
        recs.append(rec.model_copy(update={"autoscaled": autoscaled}))
    if auto is not None and o.stable is not None:
        out.apply.append(autoscaler(owner, auto, o.stable))
    elif auto is None and had_autoscaler:
        out.delete.append(("HorizontalPodAutoscaler", owner.name))
    return recs, sizes


def _draining(obs: Observed, serving: Serving, revision: str) -> int:
    """Replicas of a revision leaving service: none, except a canary that a route may
    still send traffic to. Its pods stop only once the route reads back at 0 (the pass
    after the write): a pod told to stop leaves its Service's ready endpoints at once,
    and a gateway still weighting it would answer those requests with errors."""
    if not isinstance(serving.router, WeightedRouter) or obs.status.canary_revision != revision:
        return 0
    dep = obs.deployments.get(revision)
    route_clear = obs.route is not None and obs.route.weight == 0 and obs.route.consistent
    return 0 if route_clear or dep is None else dep.replicas


def retention_stage(
    obs: Observed,
    builds: list[BuildRecord],
    serving: Serving,
    revisions: list[RevisionRecord],
    sizes: dict[str, int | None],
    settings: Settings,
    out: Plan,
) -> list[BuildRecord]:
    """Deployments and Services of recorded revisions; older ones, Jobs and artifacts
    of versions beyond history deleted."""
    spec, owner = obs.spec, obs.owner
    kept_revisions = {r.revision for r in revisions}
    for rec in revisions:
        replicas = sizes[rec.revision]
        if has_deployment(obs, rec, sizes):
            out.apply.append(serving_deployment(owner, spec, rec, replicas, settings))
            out.apply.append(revision_service(owner, rec.revision))
    o = serving.outcome
    if o.stable is not None:  # clients find the index once something serves
        router = serving.router or ReplicaRouter()
        out.apply.extend(router.objects(owner, o.stable, o.canary, o.weight))
    for rev, dep in sorted(obs.deployments.items()):
        if rev not in kept_revisions:
            out.delete += [("Deployment", dep.name), ("Service", deployment_name(owner, rev))]
    pinned = {r.version for r in revisions} | {serving.target.version}
    kept = kept_versions(builds, spec.history.limit, pinned)
    for v, job in sorted(obs.jobs.items()):
        if v not in kept:
            out.delete.append(("Job", job.name))
    return collect_artifacts(obs, builds, kept, out, settings)
