"""List, then watch, one kind into a Store: what client-go calls a reflector.

The first complete LIST sets `listed` (the reconciler waits for every cache's
first list, so it never plans from a half-filled cache). The watch resumes from
the last resourceVersion seen (bookmarks keep it fresh); when the API server
says that version is too old (410 Gone), the collection is listed afresh and the
store replaced, so an object deleted meanwhile leaves the cache too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..kube import Kube, KubeError, collection_path
from ..schedule import Backoff
from .store import Body, Key, Store

log = logging.getLogger("knn_operator")

Gone = 410


class _ExpiredError(Exception):
    """The watch's resourceVersion is older than the API server keeps: list again."""


@dataclass
class Informer:
    kube: Kube
    api_version: str
    kind: str
    namespaces: tuple[str | None, ...]  # the watched namespaces, or (None,): all of them
    selector: str
    slim: Callable[[Mapping[str, Any]], Body]
    store: Store
    changed: Callable[[Key], None]  # an owner whose entries changed
    page_size: int = 500
    watch_seconds: int = 300
    backoff: Backoff = field(default_factory=lambda: Backoff(base=1.0, cap=30.0))
    listed: asyncio.Event = field(default_factory=asyncio.Event)
    _listed: set[str | None] = field(default_factory=set)
    _at: dict[str | None, str] = field(default_factory=dict)  # resourceVersion reached

    async def run(self) -> None:
        """Until cancelled; errors are logged and retried with a bounded backoff."""
        await asyncio.gather(*(self._follow(ns) for ns in self.namespaces))

    async def _follow(self, namespace: str | None) -> None:
        path = collection_path(self.api_version, self.kind, namespace)
        failures = 0
        while True:
            try:
                if namespace not in self._at:
                    await self._list(path, namespace)
                await self._watch(path, namespace)
                failures = 0
            except _ExpiredError:
                self._at.pop(namespace, None)
            except KubeError as e:
                if e.status == Gone:
                    self._at.pop(namespace, None)
                    continue
                failures += 1
                delay = self.backoff.delay(failures)
                log.warning("cache of %s: %s; again in %.0fs", path, e, delay)
                await asyncio.sleep(delay)
            except Exception:  # a cache that stops following would go stale silently
                failures += 1
                delay = self.backoff.delay(failures)
                log.exception("cache of %s failed; listing again in %.0fs", path, delay)
                self._at.pop(namespace, None)
                await asyncio.sleep(delay)

    async def _list(self, path: str, namespace: str | None) -> None:
        bodies: list[Body] = []
        continue_: str | None = None
        while True:
            page = await self.kube.list_page(path, self.selector, self.page_size, continue_)
            # Slimmed page by page: a whole LIST of full bodies would be the peak.
            bodies += [self.slim(item) for item in page.get("items") or []]
            meta = page.get("metadata") or {}
            continue_ = meta.get("continue") or None
            if continue_ is None:
                break
        version = str(meta.get("resourceVersion") or "")
        for owner in self.store.replace(bodies, as_of=version, namespace=namespace):
            self.changed(owner)
        self._at[namespace] = version
        self._listed.add(namespace)
        if self._listed.issuperset(self.namespaces):
            self.listed.set()

    async def _watch(self, path: str, namespace: str | None) -> None:
        """Follows events until the server ends the watch (then it is resumed)."""
        stream = self.kube.watch(path, self.selector, self._at[namespace], self.watch_seconds)
        async for event in stream:
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == Gone:
                    raise _ExpiredError
                code, reason = int(obj.get("code") or 0), str(obj.get("reason") or "")
                raise KubeError(code, reason, str(obj.get("message") or ""), "WATCH", path)
            self._at[namespace] = str(obj["metadata"]["resourceVersion"])
            if kind == "BOOKMARK":
                continue
            body = self.slim(obj)
            owner = self.store.remove(body) if kind == "DELETED" else self.store.put(body)
            if owner is not None:
                self.changed(owner)
