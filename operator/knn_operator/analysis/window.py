"""Durations as users write them (30s, 1m30s, 500ms) and the windows of rate().

The rule for a rate() window: at least 4 scrape intervals. rate() needs two
samples inside its range, and scrapes drift, so a range of 2 intervals is often
empty and 4 is Prometheus' own rule of thumb. The analysis interval is the
natural window (each run judges what happened since the last); it is widened to
4 scrape intervals when it is shorter.

The probe replay runs in bursts (every probeIntervalSeconds), so a window that
judges replay latency must hold at least two bursts, or rate() of its buckets is
zero and the quantile NaN.
"""

from __future__ import annotations

from datetime import timedelta

from ..timeutil import duration_seconds

SCRAPES_PER_WINDOW = 4
REPLAYS_PER_WINDOW = 2


def parse_duration(text: str) -> timedelta:
    """A Go-style duration of the CRD's DURATION_PATTERN: 30s, 2m, 1h30m, 500ms."""
    return timedelta(seconds=duration_seconds(text))


def promql_duration(d: timedelta) -> str:
    """A PromQL range: whole seconds, at least 1s (PromQL accepts 90s as well as 1m30s)."""
    return f"{max(1, round(d.total_seconds()))}s"


def rate_window(interval: timedelta, scrape_interval: timedelta) -> timedelta:
    """The analysis interval, widened to at least 4 scrape intervals."""
    return max(interval, SCRAPES_PER_WINDOW * scrape_interval)


def probe_window(window: timedelta, probe_interval: timedelta) -> timedelta:
    """A window that holds at least two probe replays."""
    return max(window, REPLAYS_PER_WINDOW * probe_interval)
