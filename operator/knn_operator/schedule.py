"""When to look at an object again: bounded exponential backoff after errors, and
at most one pending wake-up per object (the earliest asked for)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Backoff:
    """Delay after the n-th consecutive failure: base·2ⁿ⁻¹, capped. Errors that only a
    change can fix (a refused manifest, a missing permission) start at the cap's
    fraction `slow_start` so a broken object does not hammer the API server."""

    base: float = 1.0
    cap: float = 300.0
    slow_start: float = 30.0

    def delay(self, failures: int, retryable: bool = True) -> float:
        if failures <= 0:
            return 0.0
        first = self.base if retryable else self.slow_start
        return float(min(self.cap, first * 2 ** min(failures - 1, 30)))


@dataclass
class Wakeups(Generic[K]):
    """One timer per key; asking again keeps whichever fires first. Timers call
    `fire(key)`, which must be cheap (it only schedules the reconcile)."""

    fire: Callable[[K], None]
    _timers: dict[K, tuple[float, asyncio.TimerHandle]] = field(default_factory=dict)

    def at_most_in(self, key: K, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + max(0.0, seconds)
        current = self._timers.get(key)
        if current is not None and current[0] <= due and not current[1].cancelled():
            return
        if current is not None:
            current[1].cancel()
        self._timers[key] = (due, loop.call_at(due, self._fired, key))

    def _fired(self, key: K) -> None:
        self._timers.pop(key, None)
        self.fire(key)

    def cancel(self, key: K) -> None:
        current = self._timers.pop(key, None)
        if current is not None:
            current[1].cancel()

    def __len__(self) -> int:
        return len(self._timers)
