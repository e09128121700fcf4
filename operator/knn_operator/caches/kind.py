"""The caches one kind's reconciler reads: its own objects, and the Jobs,
Deployments and builder Pods they own, looked up by owner."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from knn_contracts import api

from ..builders.job import BUILDER_COMPONENT
from ..kinds import Children, Key, Kind
from ..kube import Kube
from . import slim
from .informer import Informer
from .store import Body, Store


def _self_key(body: Mapping[str, Any]) -> Key:
    meta = body["metadata"]
    return (str(meta.get("namespace") or ""), str(meta["name"]))


def _owner_key(label: str) -> Callable[[Mapping[str, Any]], Key | None]:
    def owner(body: Mapping[str, Any]) -> Key | None:
        meta = body["metadata"]
        name = (meta.get("labels") or {}).get(label)
        return (str(meta.get("namespace") or ""), str(name)) if name else None

    return owner


def _builder_pod_owner(label: str) -> Callable[[Mapping[str, Any]], Key | None]:
    owner = _owner_key(label)

    def builder(body: Mapping[str, Any]) -> Key | None:
        labels = body["metadata"].get("labels") or {}
        return owner(body) if labels.get(api.LABEL_COMPONENT) == BUILDER_COMPONENT else None

    return builder


@dataclass
class KindCaches:
    kind: Kind
    objects: Store  # the kind's own objects, by their own key
    jobs: Store
    deployments: Store
    builder_pods: Store
    _informers: list[Informer] = field(default_factory=list)

    @classmethod
    def of(cls, kind: Kind) -> KindCaches:
        owned = _owner_key(kind.owner_label)
        return cls(
            kind,
            objects=Store(_self_key),
            jobs=Store(owned),
            deployments=Store(owned),
            builder_pods=Store(_builder_pod_owner(kind.owner_label)),
        )

    def children(self) -> Children:
        def pods(key: Key, version: str) -> Iterable[Body]:
            return [
                p
                for p in self.builder_pods.of(key)
                if (p["metadata"].get("labels") or {}).get(api.LABEL_VERSION) == version
            ]

        return Children(jobs=self.jobs.of, deployments=self.deployments.of, builder_pods=pods)

    def object(self, key: Key) -> Body | None:
        found = self.objects.of(key)
        return found[0] if found else None

    def keys(self) -> list[Key]:
        return list(self.objects.owners())

    def observed(self, body: Mapping[str, Any]) -> Key | None:
        """An object of the kind as an event or a read shows it; the key when that
        changed what the cache holds."""
        return self.objects.put(slim.owned(body))

    def gone(self, key: Key) -> None:
        self.objects.remove({"metadata": {"namespace": key[0], "name": key[1]}})

    def written(self, body: Mapping[str, Any]) -> bool:
        """The API server's answer to the operator's own apply: the object as it is
        now, stored before the watch brings it, so the next pass does not plan
        from the state before the write (and the echo changes nothing).

        True when it changed a child the cache already held: the answer may carry
        a change someone else made meanwhile (a Job's status), whose own watch
        event is now older than the entry and so asks for nothing; the caller
        looks again."""
        kind = body.get("kind")
        if kind == self.kind.kind:
            self.objects.put(slim.owned(body))
            return False
        store, shape = {
            "Job": (self.jobs, slim.job),
            "Deployment": (self.deployments, slim.deployment),
        }.get(str(kind), (None, None))
        if store is None or shape is None:
            return False
        entry = shape(body)
        owner = store.owner_of(entry)
        held = owner is not None and any(
            b["metadata"]["name"] == entry["metadata"]["name"] for b in store.of(owner)
        )
        return store.put(entry) is not None and held

    def informers(
        self, kube: Kube, namespaces: tuple[str | None, ...], changed: Callable[[Key], None]
    ) -> list[Informer]:
        label = self.kind.owner_label
        builder = f"{label},{api.LABEL_COMPONENT}={BUILDER_COMPONENT}"
        self._informers = [
            Informer(kube, "batch/v1", "Job", namespaces, label, slim.job, self.jobs, changed),
            Informer(
                kube,
                "apps/v1",
                "Deployment",
                namespaces,
                label,
                slim.deployment,
                self.deployments,
                changed,
            ),
            Informer(kube, "v1", "Pod", namespaces, builder, slim.pod, self.builder_pods, changed),
        ]
        return self._informers

    async def ready(self) -> None:
        """Returns once every child cache has been listed in full."""
        if not all(i.listed.is_set() for i in self._informers):
            await asyncio.gather(*(i.listed.wait() for i in self._informers))
