"""A descriptor per custom resource kind, so one reconciler serves them all.

A kind says what its API names are, which label marks the objects it owns, how
to read an object and its children into an observation, and how to plan from
one. Everything else (locking, wake-ups, backoff, applying the plan, status,
Events, metrics) is the reconciler's and is the same for every kind.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from ..events import Event
from ..kube import Body, Kube
from ..planning import Plan
from ..settings import Settings

Key = tuple[str, str]  # (namespace, name)


@dataclass
class Children:
    """Owned objects as the watch caches see them, looked up by owner."""

    jobs: Callable[[Key], Iterable[Body]]
    deployments: Callable[[Key], Iterable[Body]]
    builder_pods: Callable[[Key, str], Iterable[Body]]


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    api_version: str
    owner_label: str  # the label every owned object carries, valued with the owner's name
    status_model: type[BaseModel]
    phases: tuple[str, ...]
    # Raises pydantic.ValidationError for a spec the operator cannot use.
    observe: Callable[[Body, Children], Any]
    plan: Callable[[Any, Settings, dt.datetime], Plan]
    # The I/O a plan needs done first (a due analysis run): returns the observation
    # with what it learnt, and Events to post.
    prepare: Callable[[Kube, Any, dt.datetime], Awaitable[tuple[Any, list[Event]]]] | None = None
