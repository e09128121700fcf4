"""KnnIndex as a kind: how to observe one and its children, and its planner."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import replace
from typing import get_args

from knn_contracts import api
from pydantic import ValidationError

from ..builders.common import Owner
from ..builders.job import BUILDER_COMPONENT, GC_COMPONENT
from ..events import Event
from ..kube import Body, Kube
from ..models.common import ObjectMeta
from ..models.knnindex import KnnIndexSpec, KnnIndexStatus, Phase
from ..observe import DeploymentState, JobState, deployment_state, job_state
from ..planning import Observed, plan
from ..routers import route_target_of
from ..routers.client import observe_route
from . import Children, Kind, knnindex_analysis, knnindex_drift

log = logging.getLogger("knn_operator")


def _by_label(bodies: Iterable[Body], *keys: str) -> dict[str, Body]:
    """Bodies by the first of `keys` they carry as a label."""
    out: dict[str, Body] = {}
    for b in bodies:
        lbls = b.get("metadata", {}).get("labels") or {}
        v = next((lbls[k] for k in keys if lbls.get(k)), None)
        if v:
            out[v] = b
    return out


def _by_version(bodies: Iterable[Body]) -> dict[str, Body]:
    return _by_label(bodies, api.LABEL_VERSION)


def _component(bodies: Iterable[Body], component: str) -> list[Body]:
    return [
        b
        for b in bodies
        if (b.get("metadata", {}).get("labels") or {}).get(api.LABEL_COMPONENT) == component
    ]


def observe(body: Body, children: Children) -> Observed:
    meta = ObjectMeta.model_validate(body["metadata"])
    key = (meta.namespace, meta.name)
    owner = Owner(meta.name, meta.namespace, meta.uid)
    spec = KnnIndexSpec.model_validate(body.get("spec") or {})
    try:
        status = KnnIndexStatus.model_validate(body.get("status") or {})
    except ValidationError:
        log.warning("%s/%s: unreadable status; starting afresh", *key)
        status = KnnIndexStatus()
    all_jobs = list(children.jobs(key))
    jobs: dict[str, JobState] = {
        v: job_state(j, children.builder_pods(key, v))
        for v, j in _by_version(_component(all_jobs, BUILDER_COMPONENT)).items()
    }
    gc_jobs = {
        v: job_state(j, ()) for v, j in _by_version(_component(all_jobs, GC_COMPONENT)).items()
    }
    deps: dict[str, DeploymentState] = {
        # Deployments made before revisions existed carry only a version label.
        r: deployment_state(d)
        for r, d in _by_label(
            children.deployments(key), api.LABEL_REVISION, api.LABEL_VERSION
        ).items()
    }
    actions = (api.ANNOTATION_PROMOTE, api.ANNOTATION_ABORT, api.ANNOTATION_RETRY)
    return Observed(
        owner,
        meta.generation,
        spec,
        status,
        jobs,
        deps,
        meta.annotations.get(api.ANNOTATION_REBUILD),
        gc_jobs,
        {a: meta.annotations[a] for a in actions if a in meta.annotations},
    )


async def prepare(kube: Kube, obs: Observed, now: dt.datetime) -> tuple[Observed, list[Event]]:
    """The canary analysis' run and the drift trigger's measurement, when due, and
    the route a route router splits traffic in."""
    obs, analysed = await knnindex_analysis.prepare(kube, obs, now)
    obs, drifted = await knnindex_drift.prepare(kube, obs, now)
    target = route_target_of(obs.spec.rollout.traffic_router, obs.owner)
    if target is not None:
        obs = replace(obs, route=await observe_route(kube, target))
    return obs, analysed + drifted


KNN_INDEX = Kind(
    kind=api.KNN_INDEX_KIND,
    plural=api.KNN_INDEX_PLURAL,
    api_version=api.API_VERSION,
    owner_label=api.LABEL_INDEX,
    status_model=KnnIndexStatus,
    phases=get_args(Phase),
    observe=observe,
    plan=plan,
    prepare=prepare,
)
