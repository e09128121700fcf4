"""Names of the traffic routers that split a rollout's traffic in a route the user
owns (Gateway API HTTPRoute, Istio VirtualService): the Services and subsets the
route points at, and the condition and Event reasons about the route.

A route names two Services the operator keeps per index, `<index>-stable` and
`<index>-canary`, and the operator changes only their weights, so a GitOps tool
that applies the route sees nothing but weights differ.
"""

from typing import Final

# The Services an HTTPRoute's backendRefs (or a VirtualService's destination hosts)
# name: `<index><suffix>`. Each selects the pods of one revision.
STABLE_SERVICE_SUFFIX: Final = "-stable"
CANARY_SERVICE_SUFFIX: Final = "-canary"
# The subsets of a DestinationRule named in spec, whose labels the operator points at
# a revision (then the VirtualService's destinations name these subsets).
STABLE_SUBSET: Final = "stable"
CANARY_SUBSET: Final = "canary"

CONDITION_TRAFFIC_ROUTED: Final = "TrafficRouted"
# TrafficRouted reasons (also Event reasons where noted)
REASON_ROUTE_IN_SYNC: Final = "RouteInSync"  # the route carries the weights the rollout set
REASON_ROUTE_NOT_FOUND: Final = "RouteNotFound"  # Event too
REASON_ROUTE_MISCONFIGURED: Final = "RouteMisconfigured"  # Event too: no backendRef to ours
REASON_ROUTE_FORBIDDEN: Final = "RouteForbidden"  # Event too: RBAC refused the read or write
REASON_ROUTE_CHANGED: Final = "RouteWeightsChanged"  # Event too: someone else set weights
REASON_ROUTE_NOT_ACCEPTED: Final = "RouteNotAccepted"  # the gateway has not taken the route
REASON_ROUTE_UPDATING: Final = "RouteUpdating"  # the operator is setting new weights
EVENT_ROUTE_UPDATED: Final = "RouteWeightsSet"  # Normal: the operator wrote new weights
