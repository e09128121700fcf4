"""The search thread coalesces single queries queued while it is busy (searchthread.py)."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import numpy.typing as npt
import pytest
from knn_serving.serve.searchthread import Result, SearchThread

Calls = list[tuple[int, int, int | None]]


class Searches:
    """A search that answers row i with label = its first component, and records calls.
    The first call waits for `release`, so later queries queue up behind it."""

    def __init__(self, refuse: float | None = None) -> None:
        self.calls: Calls = []
        self.started = threading.Event()
        self.release = threading.Event()
        self.refuse = refuse  # a component value that makes the whole call fail

    def __call__(self, vectors: npt.NDArray[np.float32], k: int, ef: int | None) -> Result:
        self.started.set()
        self.release.wait(10)
        self.calls.append((vectors.shape[0], k, ef))
        if self.refuse is not None and (vectors[:, 0] == self.refuse).any():
            raise RuntimeError("fewer than k neighbours")
        labels = np.repeat(vectors[:, :1].astype(np.int64), k, axis=1)
        return labels, np.zeros(labels.shape, np.float32)


def row(x: float) -> npt.NDArray[np.float32]:
    return np.full((1, 4), x, np.float32)


async def ask_all(
    searches: Searches, asks: list[tuple[float, int, int | None]]
) -> list[Result | BaseException]:
    thread = SearchThread(searches)
    try:
        futures = [thread.single(row(x), k, ef) for x, k, ef in asks[:1]]
        await asyncio.to_thread(searches.started.wait, 10)
        # The rest queue up behind the first, which `release` holds.
        futures += [thread.single(row(x), k, ef) for x, k, ef in asks[1:]]
        searches.release.set()
        return await asyncio.gather(*futures, return_exceptions=True)
    finally:
        thread.close()


def test_queued_singles_are_answered_by_one_call_per_k_and_ef() -> None:
    searches = Searches()
    asks: list[tuple[float, int, int | None]] = [(1, 5, None), (2, 5, None), (3, 7, None)]
    asks += [(4, 5, None), (5, 5, 40), (6, 7, None)]
    out = asyncio.run(ask_all(searches, asks))
    # The first ran alone (the thread was idle); the rest waited and were grouped.
    assert searches.calls == [(1, 5, None), (2, 5, None), (2, 7, None), (1, 5, 40)]
    for (x, k, _), got in zip(asks, out, strict=True):
        assert not isinstance(got, BaseException)
        labels, _ = got
        assert labels.shape == (1, k) and (labels == int(x)).all()


def test_a_refused_batch_is_retried_query_by_query() -> None:
    searches = Searches(refuse=3)
    asks: list[tuple[float, int, int | None]] = [(1, 5, None), (2, 5, None), (3, 5, None)]
    out = asyncio.run(ask_all(searches, [*asks, (4, 5, None)]))
    assert isinstance(out[2], RuntimeError)
    for x, got in zip((1, 2, 4), (out[0], out[1], out[3]), strict=True):
        assert not isinstance(got, BaseException)
        assert (got[0] == x).all()


def test_calls_keep_their_place_between_singles() -> None:
    searches = Searches()
    order: list[str] = []

    async def run() -> None:
        thread = SearchThread(searches)
        try:
            first = thread.single(row(1), 3, None)
            await asyncio.to_thread(searches.started.wait, 10)
            second = thread.single(row(2), 3, None)
            call = thread.call(lambda: order.append("call"))
            third = thread.single(row(3), 3, None)
            searches.release.set()
            await asyncio.gather(first, second, call, third)
        finally:
            thread.close()

    asyncio.run(run())
    # singles 2 and 3 are not merged across the call queued between them
    assert [c[0] for c in searches.calls] == [1, 1, 1]
    assert order == ["call"]


def test_close_answers_what_is_queued() -> None:
    async def run() -> None:
        searches = Searches()
        searches.release.set()
        thread = SearchThread(searches)
        future = thread.single(row(9), 2, None)
        thread.close()
        labels, _ = await future
        assert (labels == 9).all()

    asyncio.run(run())


@pytest.mark.parametrize("error", [ValueError("bad"), MemoryError()])
def test_other_errors_reach_every_query_of_the_batch(error: Exception) -> None:
    def search(vectors: npt.NDArray[np.float32], k: int, ef: int | None) -> Result:
        raise error

    async def run() -> list[Result | BaseException]:
        thread = SearchThread(search)
        try:
            futures = [thread.single(row(1), 2, None), thread.single(row(2), 2, None)]
            return list(await asyncio.gather(*futures, return_exceptions=True))
        finally:
            thread.close()

    out = asyncio.run(run())
    assert all(type(o) is type(error) for o in out)
