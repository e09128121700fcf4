"""Which revisions serve: the target revision the spec asks for, whether it may
take traffic (built, efSearch accepted, a router to carry it), and the rollout
state machine's decision about stable, canary and weight. Pure."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from knn_contracts import api
from knn_contracts import rollout as names
from knn_contracts.identity import ServingInputs, revision_of

from ..efsearch import Verdict
from ..events import Event
from ..models.clustermodel import WorkloadSpec
from ..models.knnindex import BuildRecord, RevisionRecord
from ..rollout.machine import Actions, Inputs, Outcome, advance
from ..routers import Router, route_target_of, router_for, router_name
from ..routers.weighted import WeightedRouter
from ..settings import Settings
from ..timeutil import duration_seconds, iso
from .builds import record
from .types import Observed, Plan
from .workload import HNSW, Workload


@dataclass(frozen=True)
class Serving:
    target: BuildRecord  # the target version's build
    target_revision: RevisionRecord  # what the spec asks to serve (state not meaningful)
    verdict: Verdict | None  # the spec's efSearch for the target version, once built
    router: Router | None
    outcome: Outcome

    @property
    def refused(self) -> bool:
        return self.verdict is not None and not self.verdict.accepted

    @property
    def target_ready(self) -> bool:
        return self.target.outcome == "Succeeded" and not self.refused


def revision_for(
    spec: WorkloadSpec,
    settings: Settings,
    version: str,
    now: dt.datetime,
    workload: Workload = HNSW,
) -> RevisionRecord:
    """The revision the spec asks for, as a record (its id digests its serving inputs)."""
    s = spec.serving
    resources = s.resources.model_dump(mode="json", exclude_none=True) if s.resources else {}
    pod = s.pod.model_dump(mode="json", by_alias=True, exclude_none=True) if s.pod else {}
    inputs = ServingInputs(
        version=version,
        ef_search=workload.serving_parameter(spec),
        image=s.image or settings.serving_image,
        workers=s.workers,
        resources=json.dumps(resources, sort_keys=True) if resources else "",
        probe_interval_seconds=s.probe_interval_seconds,
        pod=json.dumps(pod, sort_keys=True) if pod else "",
    )
    return RevisionRecord(
        revision=revision_of(inputs),
        version=version,
        ef_search=inputs.ef_search,
        image=inputs.image,
        workers=inputs.workers,
        resources=s.resources,
        probe_interval_seconds=s.probe_interval_seconds,
        pod=s.pod if pod else None,
        state="Canary",
        since=iso(now),
    )


def stable_size(obs: Observed) -> int:
    """The stable's replica count: the spec's, or with autoscaling what the autoscaler
    chose for the revision it scales (read back from its Deployment)."""
    n, auto = obs.spec.serving.replicas, obs.spec.serving.autoscaling
    if auto is None:
        return n
    for rec in obs.status.revisions:
        dep = obs.deployments.get(rec.revision)
        if rec.autoscaled and dep is not None and dep.replicas > 0:
            return dep.replicas
    return min(max(n, auto.min_replicas), auto.max_replicas)


def _stable(obs: Observed, builds: list[BuildRecord]) -> str | None:
    """The stable revision from status; before revisions existed, its version (whose
    Deployment is named by version). None when its build record has aged out."""
    st = obs.status
    stable = st.stable_revision or st.stable_version
    if stable is None:
        return None
    version = next((r.version for r in st.revisions if r.revision == stable), stable)
    return stable if record(builds, version) is not None else None


def new_actions(obs: Observed) -> Actions:
    """Action annotations whose value differs from the one last acted on."""
    handled = obs.status.handled_actions

    def new(key: str, seen: str | None) -> bool:
        value = obs.annotations.get(key)
        return bool(value) and value != seen

    return Actions(
        promote=new(api.ANNOTATION_PROMOTE, handled.promote),
        abort=new(api.ANNOTATION_ABORT, handled.abort),
        retry=new(api.ANNOTATION_RETRY, handled.retry),
    )


def serving_stage(
    obs: Observed,
    builds: list[BuildRecord],
    target_version: str,
    settings: Settings,
    now: dt.datetime,
    out: Plan,
) -> Serving:
    spec = obs.spec
    target_rec = record(builds, target_version)
    assert target_rec is not None
    verdict = obs.workload.verdict(spec, target_rec)
    target = revision_for(spec, settings, target_version, now, obs.workload)
    router = router_for(spec.rollout.traffic_router, obs.owner, obs.route)
    stable = _stable(obs, builds)
    ready = target_rec.outcome == "Succeeded" and (verdict is None or verdict.accepted)
    blocked = route_blocked(obs)
    if (router is None or blocked) and stable is not None and ready:
        ready = False  # nothing can carry a canary's traffic: hold, say why
        _router_unavailable(obs, out)
    dep = obs.deployments.get(target.revision)
    replicas = stable_size(obs)

    def canary_ready(weight: int) -> bool:
        want = router.split(replicas, weight).canary if router else replicas
        up = dep is not None and dep.is_available and dep.replicas == want
        # A route router's step completes when the route reads back at its weight
        # (the write goes out after this pass; the next pass verifies it).
        weighted = isinstance(router, WeightedRouter) and stable is not None
        return up and (not weighted or route_at(obs, weight))

    analysis = spec.rollout.analysis
    outcome = advance(
        Inputs(
            steps=spec.rollout.steps,
            stable=stable,
            target=target.revision,
            target_ready=ready,
            canary_ready=canary_ready,
            state=obs.status.rollout,
            rolled_back=obs.status.rolled_back,
            actions=new_actions(obs),
            analysis=obs.analysis,
            analysis_interval=duration_seconds(analysis.interval) if analysis else None,
            now=now,
        )
    )
    out.events.extend(outcome.events)
    out.wake_within(outcome.requeue_after)
    return Serving(target_rec, target, verdict, router, outcome)


# Before the first read of a route router's route (or when the read failed).
ROUTE_NOT_READ = "the route has not been read"


def route_blocked(obs: Observed) -> str | None:
    """Why the route a route router needs cannot carry a canary, if it cannot."""
    if route_target_of(obs.spec.rollout.traffic_router, obs.owner) is None:
        return None
    r = obs.route
    if r is None:
        return ROUTE_NOT_READ
    return r.problem


def route_at(obs: Observed, weight: int) -> bool:
    r = obs.route
    return r is not None and r.weight == weight and r.consistent and r.accepted is not False


def router_unavailable(obs: Observed) -> str:
    blocked = route_blocked(obs)
    if blocked is not None:
        return f"the canary waits for its route: {blocked}"
    name = router_name(obs.spec.rollout.traffic_router)
    return (
        f"traffic router {name} is not available in this operator version; "
        "use rollout.trafficRouter.replicas"
    )


def _router_unavailable(obs: Observed, out: Plan) -> None:
    message = router_unavailable(obs)
    if obs.status.message != message:
        out.events.append(Event("Warning", names.EVENT_ROUTER_UNAVAILABLE, message))
