"""Traffic routers behind one Protocol, and the registry that picks one from
spec.rollout.trafficRouter (Flagger's shape: one module per implementation).

A router says, for a stable and a canary revision and the weight the steps ask
for, how many replicas each runs and which objects carry the traffic split,
and what weight it actually delivers (which may be coarser than asked).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..builders.common import Manifest, Owner
from ..models.knnindex import TrafficRouter
from .routes import RouteState, RouteTarget


@dataclass(frozen=True)
class Split:
    stable: int
    canary: int


class Router(Protocol):
    name: str
    # Whether a replaced stable can stay up without taking traffic (for
    # scaleDownDelaySeconds); with the replica router every running pod serves.
    keeps_warm: bool

    def split(self, replicas: int, weight: int) -> Split:
        """Replicas of stable and canary for `replicas` desired and the canary at `weight`%."""
        ...

    def delivered(self, stable_available: int, canary_available: int, weight: int) -> int:
        """The canary's actual share (percent) of traffic given what is available."""
        ...

    def objects(
        self, owner: Owner, stable: str | None, canary: str | None, weight: int
    ) -> list[Manifest]:
        """The objects that route the index's traffic (its Service, routes)."""
        ...


def router_for(
    spec: TrafficRouter, owner: Owner, observed: RouteState | None = None
) -> Router | None:
    """The router the spec names; `observed` is its route as read before this pass."""
    from .replicas import ReplicaRouter
    from .weighted import WeightedRouter

    target = route_target_of(spec, owner)
    if target is None:
        return ReplicaRouter()
    return WeightedRouter(router_name(spec), target, observed)


def route_target_of(spec: TrafficRouter, owner: Owner) -> RouteTarget | None:
    """The route whose weights a router sets (None: the replica router has none)."""
    from .weighted import route_target

    if spec.gateway_api is not None:
        return route_target(owner, "HTTPRoute", spec.gateway_api.http_route)
    if spec.istio is not None:
        i = spec.istio
        return route_target(owner, "VirtualService", i.virtual_service, i.destination_rule)
    return None


def router_name(spec: TrafficRouter) -> str:
    if spec.gateway_api is not None:
        return "gatewayAPI"
    if spec.istio is not None:
        return "istio"
    return "replicas"
