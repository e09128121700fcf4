"""Time as data: the planner gets `now` as an aware datetime and writes RFC 3339
strings (what metav1 timestamps look like) into status. Pure."""

from __future__ import annotations

import datetime as dt
import re

_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def iso(when: dt.datetime) -> str:
    """Second resolution, UTC, `Z` suffix: the form the API server uses."""
    return when.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_iso(text: str | None) -> dt.datetime | None:
    """A timestamp this operator wrote (or a user edited); None when absent or unreadable,
    so a damaged status field restarts a timer instead of failing the reconcile."""
    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def duration_seconds(text: str) -> float:
    """`1h30m`, `90s`, `250ms` (the CRD's duration pattern) in seconds."""
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{text!r} is not a duration like 30s, 2m or 1h30m")
    return sum(int(n) * _UNIT_SECONDS[u] for n, u in parts)


def seconds_until(when: dt.datetime, now: dt.datetime) -> float:
    return max(0.0, (when - now).total_seconds())
