"""The I/O a plan needs first, the same for every kind: a due canary analysis run,
a due drift measurement (spec.rebuild.onDrift), and the route a gatewayAPI or istio
router splits traffic in."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from ..events import Event
from ..kube import Kube
from ..planning import Observed
from ..routers import route_target_of
from ..routers.client import observe_route
from . import knnindex_analysis, knnindex_drift


async def prepare(kube: Kube, obs: Observed, now: dt.datetime) -> tuple[Observed, list[Event]]:
    obs, analysed = await knnindex_analysis.prepare(kube, obs, now)
    obs, drifted = await knnindex_drift.prepare(kube, obs, now)
    target = route_target_of(obs.spec.rollout.traffic_router, obs.owner)
    if target is not None:
        obs = replace(obs, route=await observe_route(kube, target))
    return obs, analysed + drifted
