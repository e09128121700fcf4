"""Latency at half of the peak rate, the load DESIGN's p99 target is set at."""

from __future__ import annotations

import statistics

from . import paired, vegeta


def at_half_peak(
    url: str,
    path: str,
    bodies: list[bytes],
    *,
    peak: float,
    seconds: int,
    runs: int,
    max_steal: float,
    content_type: str,
) -> tuple[str, str]:
    """One table row: p50/p99 at a constant peak/2 requests per second."""
    rate = max(1, int(peak / 2))

    def once() -> vegeta.VegetaResult:
        r = vegeta.run(url, path, bodies, rate=rate, seconds=seconds, content_type=content_type)
        if r.success < 1.0:
            raise SystemExit(
                f"vegeta at {rate} req/s: {r.success:.2%} succeeded; errors: {', '.join(r.errors)}"
            )
        return r

    kept = paired.steady(once, runs, max_steal=max_steal)
    p50 = statistics.median(r.p50_ms for r, _ in kept)
    p99 = statistics.median(r.p99_ms for r, _ in kept)
    each = ", ".join(f"{r.p99_ms:.2f}" for r, _ in sorted(kept, key=lambda x: x[0].p99_ms))
    return (
        f"knn-serve at half of peak: {rate:,} req/s constant (vegeta), 1 worker",
        f"p50 {p50:.2f} ms, **p99 {p99:.2f} ms** (target < 5 ms; median of {len(kept)} "
        f"{seconds}-s runs, p99s: {each})",
    )
