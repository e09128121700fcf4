"""One side of a paired throughput measurement against a server: wrk with fixed
bodies, and the server's CPU-seconds per query from /proc."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from . import paired, wrk
from .live import _cpu_seconds

JSON = "application/json"


@dataclass
class Loader:
    """Drives one server with wrk; each call is one measured run (see paired.py)."""

    url: str
    path: str
    bodies: list[bytes]
    connections: int
    seconds: int
    content_type: str = JSON
    queries_per_request: int = 1
    pid: int | None = None  # the server's, to count its CPU-seconds per query
    results: list[wrk.WrkResult] = field(default_factory=list)  # every run, kept or not
    cpu_per_query: list[float] = field(default_factory=list)  # seconds, every run

    def __call__(self) -> float:
        before = _cpu_seconds(self.pid) if self.pid is not None else 0.0
        r = wrk.run(
            self.url,
            self.path,
            self.bodies,
            connections=self.connections,
            seconds=self.seconds,
            content_type=self.content_type,
        )
        if r.non_2xx or r.errors:
            raise SystemExit(f"wrk on {self.path}: {r.non_2xx} non-2xx responses; {r.error_detail}")
        self.results.append(r)
        if self.pid is not None:
            queries = max(r.requests * self.queries_per_request, 1)
            self.cpu_per_query.append((_cpu_seconds(self.pid) - before) / queries)
        return r.requests_per_second * self.queries_per_request

    def cpu_us(self, ratio: paired.PairedRatio) -> str:
        """Median server CPU microseconds per query over the kept pairs."""
        if not self.cpu_per_query:
            return "n/a"
        return f"{1e6 * statistics.median(self.cpu_per_query[p.attempt] for p in ratio.pairs):.0f}"
