"""Reading and setting the weights of a route the user owns. Pure: bodies in, bodies out.

An HTTPRoute's `rules`/`backendRefs` and a VirtualService's `http`/`route` are atomic
lists in their CRDs, so a server-side apply of only the weights would take ownership
of everything the user wrote beside them. The operator reads the route, changes the
`weight` of the entries that name its own Services (or subsets) and nothing else,
and writes the whole object back under its resourceVersion (routers.client).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from knn_contracts import api
from knn_contracts import routing as rnames

Body = dict[str, Any]
HTTP_ROUTE = ("gateway.networking.k8s.io/v1", "HTTPRoute")
VIRTUAL_SERVICE = ("networking.istio.io/v1", "VirtualService")
DESTINATION_RULE = ("networking.istio.io/v1", "DestinationRule")
FULL = 100


@dataclass(frozen=True)
class RouteTarget:
    """The route a spec names, and the two entries in it that are the operator's."""

    kind: Literal["HTTPRoute", "VirtualService"]
    name: str
    namespace: str
    stable: str  # Service name, or subset name when destination_rule is set
    canary: str
    destination_rule: str | None = None

    @property
    def api_version(self) -> str:
        return HTTP_ROUTE[0] if self.kind == "HTTPRoute" else VIRTUAL_SERVICE[0]

    @property
    def title(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass(frozen=True)
class RouteState:
    """A route as read: the canary's share, or why it cannot be used."""

    target: RouteTarget
    weight: int | None = None  # the canary's share in percent; None when unusable
    reason: str | None = None  # a routing REASON_* when unusable
    problem: str | None = None
    generation: int | None = None
    # Gateway API: whether every parent gateway accepted this generation (None: the
    # route reports no parents yet, or the kind has no such status).
    accepted: bool | None = None
    consistent: bool = True  # every rule that names our entries carries the same split
    # DestinationRule subsets: which revision each points at (None: no DestinationRule).
    subsets: tuple[str | None, str | None] | None = None

    @property
    def usable(self) -> bool:
        return self.weight is not None


@dataclass(frozen=True)
class RouteWrite:
    target: RouteTarget
    weight: int  # the canary's share in percent
    stable_revision: str
    canary_revision: str  # the stable's revision when there is no canary


def share(stable_weight: int, canary_weight: int) -> int:
    total = stable_weight + canary_weight
    return round(FULL * canary_weight / total) if total > 0 else 0


# -- Gateway API ---------------------------------------------------------------------------


def _ours_http(ref: Body, t: RouteTarget) -> str | None:
    """'stable' or 'canary' when a backendRef names one of our Services."""
    if ref.get("group", "") not in ("", "core") or ref.get("kind", "Service") != "Service":
        return None
    if ref.get("namespace", t.namespace) != t.namespace:
        return None
    name = ref.get("name")
    return "stable" if name == t.stable else "canary" if name == t.canary else None


def _pairs(
    rules: list[Body] | None, entries: str, role: Callable[[Body], str | None]
) -> Iterator[dict[str, Body]]:
    """Our two entries ('stable', 'canary') of each rule that names both, as the very
    dicts of the body (setting a weight in them sets it in the body). A rule naming only
    one of them (health checks pinned to the stable) is the user's to keep as it is."""
    for rule in rules or []:
        ours: dict[str, Body] = {}
        for entry in rule.get(entries) or []:
            r = role(entry)
            if r is not None:
                ours[r] = entry
        if len(ours) == 2:
            yield ours


def _http_rules(route: Body, t: RouteTarget) -> Iterator[dict[str, Body]]:
    rules = (route.get("spec") or {}).get("rules")
    return _pairs(rules, "backendRefs", lambda ref: _ours_http(ref, t))


def read_http_route(route: Body, t: RouteTarget) -> RouteState:
    splits: list[int] = []
    for ours in _http_rules(route, t):
        # Gateway API's default weight is 1.
        splits.append(share(ours["stable"].get("weight", 1), ours["canary"].get("weight", 1)))
    if not splits:
        return misconfigured(t, f"no rule has backendRefs to Services {t.stable} and {t.canary}")
    return RouteState(
        t,
        weight=splits[0],
        generation=(route.get("metadata") or {}).get("generation"),
        accepted=_accepted(route),
        consistent=len(set(splits)) == 1,
    )


def _accepted(route: Body) -> bool | None:
    gen = (route.get("metadata") or {}).get("generation")
    parents = (route.get("status") or {}).get("parents") or []
    if not parents:
        return None
    for p in parents:
        cond = next((c for c in p.get("conditions") or [] if c.get("type") == "Accepted"), None)
        if cond is None or cond.get("status") != "True" or cond.get("observedGeneration") != gen:
            return False
    return True


# -- Istio ---------------------------------------------------------------------------------


def _ours_istio(dest: Body, t: RouteTarget) -> str | None:
    if t.destination_rule is not None:
        subset = dest.get("subset")
        return "stable" if subset == t.stable else "canary" if subset == t.canary else None
    host = str(dest.get("host", "")).split(".")
    if len(host) > 1 and host[1] != t.namespace:
        return None
    return "stable" if host[0] == t.stable else "canary" if host[0] == t.canary else None


def _vs_routes(vs: Body, t: RouteTarget) -> Iterator[dict[str, Body]]:
    http = (vs.get("spec") or {}).get("http")
    return _pairs(http, "route", lambda entry: _ours_istio(entry.get("destination") or {}, t))


def read_virtual_service(vs: Body, t: RouteTarget) -> RouteState:
    what = "subset" if t.destination_rule else "host"
    splits: list[int] = []
    for ours in _vs_routes(vs, t):
        # Istio: a destination without a weight takes what the others leave (here 100 or 0).
        sw, cw = ours["stable"].get("weight"), ours["canary"].get("weight")
        splits.append(share(FULL - (cw or 0) if sw is None else sw, cw or 0))
    if not splits:
        return misconfigured(
            t, f"no http route has destinations with {what}s {t.stable} and {t.canary}"
        )
    return RouteState(
        t,
        weight=splits[0],
        generation=(vs.get("metadata") or {}).get("generation"),
        consistent=len(set(splits)) == 1,
    )


def read_subsets(dr: Body, t: RouteTarget) -> tuple[str | None, str | None] | str:
    """The revisions the stable and canary subsets select, or what is wrong."""
    subsets = {s.get("name"): s for s in (dr.get("spec") or {}).get("subsets") or []}
    for name in (t.stable, t.canary):
        if name not in subsets:
            return f"DestinationRule {t.destination_rule} has no subset {name}"
    return tuple(  # type: ignore[return-value]
        (subsets[n].get("labels") or {}).get(api.LABEL_REVISION) for n in (t.stable, t.canary)
    )


def set_subsets(dr: Body, t: RouteTarget, stable: str, canary: str) -> Body:
    """Points the stable and canary subsets at revisions (their other labels are kept)."""
    out = copy.deepcopy(dr)
    for s in out["spec"]["subsets"]:
        rev = stable if s.get("name") == t.stable else canary if s.get("name") == t.canary else None
        if rev is not None:
            s["labels"] = {**(s.get("labels") or {}), api.LABEL_REVISION: rev}
    return out


def read_route(route: Body, t: RouteTarget) -> RouteState:
    return read_http_route(route, t) if t.kind == "HTTPRoute" else read_virtual_service(route, t)


def set_route(route: Body, t: RouteTarget, weight: int) -> Body:
    """The route with our two entries at `weight` (canary) and the rest (stable), in
    every rule that names both; nothing else changes."""
    out = copy.deepcopy(route)
    pairs = _http_rules(out, t) if t.kind == "HTTPRoute" else _vs_routes(out, t)
    for ours in pairs:
        ours["stable"]["weight"], ours["canary"]["weight"] = FULL - weight, weight
    return out


def not_found(t: RouteTarget, what: str | None = None) -> RouteState:
    missing = what or t.title
    return RouteState(
        t,
        reason=rnames.REASON_ROUTE_NOT_FOUND,
        problem=f"{missing} not found in namespace {t.namespace}",
    )


def forbidden(t: RouteTarget, message: str) -> RouteState:
    return RouteState(
        t,
        reason=rnames.REASON_ROUTE_FORBIDDEN,
        problem=f"the operator may not read or write {t.title}: {message}",
    )


def misconfigured(t: RouteTarget, why: str) -> RouteState:
    return RouteState(t, reason=rnames.REASON_ROUTE_MISCONFIGURED, problem=f"{t.title}: {why}")
