"""Reading a route and writing its weights: the only I/O of the route routers.

A write reads the object, changes the weights of the operator's own entries
(routers.routes), and replaces the object under the resourceVersion it read, so a
concurrent edit by the user or a GitOps tool is never overwritten: the API server
answers 409 and the write starts again from the new object.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from ..kube import Body, Conflict, Forbidden, Kube, KubeError
from .routes import (
    DESTINATION_RULE,
    RouteState,
    RouteTarget,
    RouteWrite,
    forbidden,
    misconfigured,
    not_found,
    read_route,
    read_subsets,
    set_route,
    set_subsets,
)

log = logging.getLogger("knn_operator")
ATTEMPTS = 5


async def observe_route(kube: Kube, t: RouteTarget) -> RouteState:
    try:
        body = await kube.get(t.api_version, t.kind, t.namespace, t.name)
        if body is None:
            return not_found(t)
        state = read_route(body, t)
        if t.destination_rule is None or not state.usable:
            return state
        dr = await kube.get(*DESTINATION_RULE, t.namespace, t.destination_rule)
        if dr is None:
            return not_found(t, f"DestinationRule {t.destination_rule}")
        subsets = read_subsets(dr, t)
        if isinstance(subsets, str):
            return misconfigured(t, subsets)
        return replace(state, subsets=subsets)
    except KubeError as e:
        if e.status == Forbidden:
            return forbidden(t, e.message)
        raise


async def write_route(kube: Kube, w: RouteWrite) -> None:
    """Subsets first (a DestinationRule), then the weights: a weight never moves to a
    subset that still selects the previous revision."""
    t = w.target
    if t.destination_rule is not None:
        await _replace(
            kube,
            DESTINATION_RULE,
            t.destination_rule,
            t,
            lambda body: set_subsets(body, t, w.stable_revision, w.canary_revision),
        )
    await _replace(
        kube, (t.api_version, t.kind), t.name, t, lambda body: set_route(body, t, w.weight)
    )


async def _replace(
    kube: Kube,
    kind: tuple[str, str],
    name: str,
    t: RouteTarget,
    change: Callable[[Body], Body],
) -> None:
    for attempt in range(1, ATTEMPTS + 1):
        body = await kube.get(kind[0], kind[1], t.namespace, name)
        if body is None:
            return  # gone meanwhile: the next pass reports it
        new = change(body)
        if new == body:
            return
        try:
            await kube.replace(new)
            return
        except KubeError as e:
            if e.status != Conflict or attempt == ATTEMPTS:
                raise
            log.info("%s/%s %s changed while writing weights; again", t.namespace, name, kind[1])
