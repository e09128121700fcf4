"""Progress lines for long builds: percent, vectors/s and ETA, rate-limited."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class Progress:
    def __init__(
        self,
        total: int,
        log: logging.Logger,
        *,
        every_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.log = log
        self.every = every_seconds
        self.clock = clock
        self.start = clock()
        self.last = self.start
        self.done = 0

    def advance(self, n: int) -> None:
        self.done += n
        now = self.clock()
        if now - self.last < self.every and self.done < self.total:
            return
        self.last = now
        self.log.info("%s", self.line(now))

    def line(self, now: float) -> str:
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        remaining = (self.total - self.done) / rate if rate > 0 else float("inf")
        pct = 100.0 * self.done / self.total if self.total else 100.0
        eta = "?" if remaining == float("inf") else f"{remaining:.0f}s"
        return (
            f"added {pct:5.1f}% ({self.done}/{self.total}) {rate:,.0f} vectors/s "
            f"elapsed {elapsed:.0f}s ETA {eta}"
        )
