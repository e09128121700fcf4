"""A store of slim bodies grouped by the key of the object that owns them. Pure:
no I/O, no clock; the informers, kopf's events and the reconciler's own writes
feed it, the reconciler reads it.

Ordering: several feeds race (a watch event can arrive after the reconciler
stored the response of its own write), so an entry is never replaced by an
older resourceVersion. resourceVersion is opaque by the API's contract, but the
API server hands out etcd's revisions, which are integers that only grow; they
are compared as integers when both are, and otherwise the incoming one wins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

Body = dict[str, Any]
Key = tuple[str, str]  # (namespace, name) of the owner


def older(incoming: str | None, current: str | None) -> bool:
    """Whether `incoming` precedes `current` (see the module's note on ordering)."""
    if incoming is None or current is None:
        return False
    try:
        return int(incoming) < int(current)
    except ValueError:
        return False


def _name(body: Mapping[str, Any]) -> str:
    return str(body["metadata"]["name"])


def _version(body: Mapping[str, Any]) -> str | None:
    rv = body["metadata"].get("resourceVersion")
    return None if rv is None else str(rv)


@dataclass
class Store:
    """Slim bodies by owner key and name. `owner_of` says which owner a body belongs
    to (None: not one this store keeps). Every mutation returns the owner whose
    entries changed, so the caller asks for a reconcile only when something the
    planner reads did change (an echo of the operator's own write does not)."""

    owner_of: Callable[[Mapping[str, Any]], Key | None]
    _by_owner: dict[Key, dict[str, Body]] = field(default_factory=dict)

    def put(self, body: Body) -> Key | None:
        owner = self.owner_of(body)
        if owner is None:
            return None
        entries = self._by_owner.setdefault(owner, {})
        name = _name(body)
        current = entries.get(name)
        if current is not None and (older(_version(body), _version(current)) or current == body):
            return None
        entries[name] = body
        return owner

    def remove(self, body: Mapping[str, Any]) -> Key | None:
        """A deletion, unless the store already holds a newer object of that name
        (deleted and made again before the watch caught up)."""
        owner = self.owner_of(body)
        if owner is None:
            return None
        entries = self._by_owner.get(owner, {})
        current = entries.get(_name(body))
        if current is None or older(_version(body), _version(current)):
            return None
        del entries[_name(body)]
        if not entries:
            del self._by_owner[owner]  # owners come and go: keep no empty shells
        return owner

    def replace(
        self, bodies: Iterable[Body], as_of: str | None = None, namespace: str | None = None
    ) -> set[Key]:
        """Everything there is (in `namespace`, or everywhere), as a fresh LIST at
        resourceVersion `as_of` says: what it lacks is gone, except entries newer
        than the list (stored from a write made after it). Returns the owners whose
        entries changed."""
        fresh = Store(self.owner_of)
        for body in bodies:
            fresh.put(body)
        for owner, entries in self._by_owner.items():
            for body in entries.values():
                if (namespace is not None and owner[0] != namespace) or older(
                    as_of, _version(body)
                ):
                    fresh.put(body)
        changed = {
            owner
            for owner in self._by_owner.keys() | fresh._by_owner.keys()
            if self._by_owner.get(owner) != fresh._by_owner.get(owner)
        }
        self._by_owner = fresh._by_owner
        return changed

    def of(self, owner: Key) -> list[Body]:
        return list(self._by_owner.get(owner, {}).values())

    def owners(self) -> Iterator[Key]:
        return iter(list(self._by_owner))

    def __len__(self) -> int:
        return sum(len(e) for e in self._by_owner.values())
