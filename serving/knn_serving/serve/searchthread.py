"""The one thread that runs every search, coalescing concurrent single queries.

hnswlib's search breadth (ef) belongs to the index, not to a query, so every
search runs on this one thread, where a request's own `ef` is set and restored
without racing another request. Single queries that queue up while it is busy
are answered together by one batched call per (k, ef): one hand-off, one
Python-to-C crossing and one wake-up of the event loop for the lot, instead of
one each (with 8 clients, most of a single query's cost on 2 cores was those,
not the search; docs/benchmarks.md). A query that finds the thread idle runs
at once, alone: batching never waits for company.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]
Result = tuple[npt.NDArray[np.integer], npt.NDArray[np.float32]]
# Searches rows (n, d) for k neighbours at ef (None: the index's default).
SearchFn = Callable[[Vectors, int, int | None], Result]

# Single queries answered by one call at most; bounds the latency a query queued
# last adds to the first (64 searches of ~100-250 us).
MAX_COALESCED = 64


@dataclass
class _Single:
    vector: Vectors  # (1, d)
    k: int
    ef: int | None
    future: asyncio.Future[Result]
    loop: asyncio.AbstractEventLoop


@dataclass
class _Call:
    fn: Callable[[], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


_Item = _Single | _Call | None  # None: stop after what is already queued
# A future to settle with a value, or with an exception if one is given.
_Outcome = tuple[asyncio.Future[Any], Any, Exception | None]
T = TypeVar("T")


def groups(singles: list[_Single]) -> list[list[_Single]]:
    """Singles with the same k and ef, in arrival order of each group's first."""
    by_key: dict[tuple[int, int | None], list[_Single]] = {}
    for s in singles:
        by_key.setdefault((s.k, s.ef), []).append(s)
    return list(by_key.values())


def _deliver(outcomes: list[_Outcome]) -> None:
    """On the event loop: settle the futures of one batch (a client gone is skipped)."""
    for future, value, error in outcomes:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)


class SearchThread:
    def __init__(self, search: SearchFn, name: str = "hnsw") -> None:
        self._search = search
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._stash: list[_Item] = []  # one item taken while coalescing, run next
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def single(self, vector: Vectors, k: int, ef: int | None) -> asyncio.Future[Result]:
        """One query row (1, d); may be answered within a batch of others."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._queue.put(_Single(vector, k, ef, future, loop))
        return future

    def call(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Run `fn` on the search thread, alone (batches, probe replays)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Call(fn, future, loop))
        return future

    def close(self) -> None:
        """Answer what is queued, then stop."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (item := self._next()) is not None:
            if isinstance(item, _Call):
                self._run_call(item)
            else:
                self._answer(self._take_more(item))

    def _next(self) -> _Item:
        return self._stash.pop() if self._stash else self._queue.get()

    def _take_more(self, first: _Single) -> list[_Single]:
        """`first` and the singles queued behind it, up to MAX_COALESCED or the first
        other item, which is stashed to run next (calls and stop keep their place)."""
        singles = [first]
        while len(singles) < MAX_COALESCED:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                break
            if not isinstance(nxt, _Single):
                self._stash.append(nxt)
                break
            singles.append(nxt)
        return singles

    def _run_call(self, call: _Call) -> None:
        outcome: _Outcome
        try:
            outcome = (call.future, call.fn(), None)
        except Exception as e:
            outcome = (call.future, None, e)
        _settle(call.loop, [outcome])

    def _answer(self, singles: list[_Single]) -> None:
        outcomes: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
        for group in groups(singles):
            for s, value, error in self._answer_group(group):
                outcomes.setdefault(s.loop, []).append((s.future, value, error))
        for loop, batch in outcomes.items():
            _settle(loop, batch)

    def _answer_group(
        self, group: list[_Single]
    ) -> list[tuple[_Single, Result | None, Exception | None]]:
        k, ef = group[0].k, group[0].ef
        try:
            if len(group) == 1:
                return [(group[0], self._search(group[0].vector, k, ef), None)]
            labels, dists = self._search(np.concatenate([s.vector for s in group]), k, ef)
        except RuntimeError as e:
            if len(group) == 1:
                return [(group[0], None, e)]
            # hnswlib refuses a whole batch when one query cannot get k neighbours:
            # each query then gets its own answer or its own refusal.
            return [out for s in group for out in self._answer_group([s])]
        except Exception as e:
            return [(s, None, e) for s in group]
        return [(s, (labels[i : i + 1], dists[i : i + 1]), None) for i, s in enumerate(group)]


def _settle(loop: asyncio.AbstractEventLoop, outcomes: list[_Outcome]) -> None:
    # A loop closed while a search ran has nobody left to answer.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_deliver, outcomes)
