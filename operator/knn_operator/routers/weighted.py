"""The route routers (Gateway API, Istio): the split is the weights of a route the
user owns, between two Services the operator keeps, `<index>-stable` and
`<index>-canary`, each selecting one revision's pods.

Replicas follow the weight (the canary runs enough of the stable's count to carry
its share, at least one), and a replaced stable can stay warm: no route sends it
traffic. The canary's route weight stays 0 until one of its pods is available, so a
step never sends requests to a revision with nothing to answer them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from knn_contracts import routing as rnames

from ..builders.common import Manifest, Owner
from ..builders.service import index_service, role_service
from . import Split
from .routes import RouteState, RouteTarget, RouteWrite


def route_target(
    owner: Owner, kind: str, name: str, destination_rule: str | None = None
) -> RouteTarget:
    if destination_rule is not None:
        return RouteTarget(
            "VirtualService",
            name,
            owner.namespace,
            rnames.STABLE_SUBSET,
            rnames.CANARY_SUBSET,
            destination_rule,
        )
    return RouteTarget(
        "HTTPRoute" if kind == "HTTPRoute" else "VirtualService",
        name,
        owner.namespace,
        owner.name + rnames.STABLE_SERVICE_SUFFIX,
        owner.name + rnames.CANARY_SERVICE_SUFFIX,
    )


@dataclass
class WeightedRouter:
    name: str
    target: RouteTarget
    observed: RouteState | None  # the route as read before this pass
    keeps_warm: bool = True

    def split(self, replicas: int, weight: int) -> Split:
        if weight <= 0:
            return Split(replicas, 0)
        n = max(replicas, 1)
        return Split(replicas, min(n, max(1, math.ceil(n * weight / 100))))

    def delivered(self, stable_available: int, canary_available: int, weight: int) -> int:
        o = self.observed
        return o.weight if o is not None and o.weight is not None else 0

    def objects(
        self, owner: Owner, stable: str | None, canary: str | None, weight: int
    ) -> list[Manifest]:
        if stable is None:
            return []
        # With a DestinationRule the subsets pick revisions among the index Service's
        # endpoints, so that Service selects every revision; otherwise clients that
        # address the index directly reach the stable only.
        everything = self.target.destination_rule is not None
        return [
            index_service(owner, None if everything else stable),
            role_service(owner, rnames.STABLE_SERVICE_SUFFIX, stable),
            role_service(owner, rnames.CANARY_SERVICE_SUFFIX, canary or stable),
        ]

    def write(self, stable: str, canary: str | None, weight: int) -> RouteWrite:
        return RouteWrite(self.target, weight if canary else 0, stable, canary or stable)
