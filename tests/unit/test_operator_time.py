"""Time as data and the reconciler's scheduling: durations, timestamps, backoff and
per-object wake-ups (real asyncio timers, short delays)."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from knn_operator.kube import KubeError
from knn_operator.schedule import Backoff, Wakeups
from knn_operator.timeutil import duration_seconds, iso, parse_iso, seconds_until

T0 = dt.datetime(2026, 12, 1, 12, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("5m", 300.0), ("1h30m", 5400.0), ("250ms", 0.25), ("1m0s", 60.0)],
)
def test_durations_as_users_write_them(text: str, seconds: float) -> None:
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "s", "1.5s", "30 s", "1d", "30s "])
def test_bad_durations_are_named(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        duration_seconds(text)


def test_timestamps_round_trip_in_utc() -> None:
    assert iso(T0) == "2026-12-01T12:00:00Z"
    plus_one = dt.timezone(dt.timedelta(hours=1))
    assert iso(T0.astimezone(plus_one)) == "2026-12-01T12:00:00Z"
    assert parse_iso("2026-12-01T12:00:00Z") == T0
    assert parse_iso("2026-12-01T12:00:00") == T0  # naive means UTC
    assert parse_iso("yesterday") is None and parse_iso(None) is None


def test_seconds_until_never_negative() -> None:
    assert seconds_until(T0 + dt.timedelta(seconds=5), T0) == 5.0
    assert seconds_until(T0 - dt.timedelta(seconds=5), T0) == 0.0


def test_backoff_doubles_and_is_bounded() -> None:
    b = Backoff(base=1.0, cap=60.0, slow_start=30.0)
    assert [b.delay(n) for n in range(0, 9)] == [0, 1, 2, 4, 8, 16, 32, 60, 60]
    assert b.delay(10_000) == 60.0  # no overflow for a long-broken object
    assert [b.delay(n, retryable=False) for n in (1, 2, 3)] == [30, 60, 60]


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (0, True),
        (409, True),
        (429, True),
        (503, True),
        (422, False),
        (403, False),
        (400, False),
        (404, False),
    ],
)
def test_which_api_errors_are_worth_retrying_soon(status: int, retryable: bool) -> None:
    assert KubeError(status, "R", "m", "PATCH", "/x").retryable is retryable


def test_wakeups_keep_the_earliest_and_fire_once() -> None:
    async def story() -> list[str]:
        fired: list[str] = []
        w: Wakeups[str] = Wakeups(fired.append)
        w.at_most_in("a", 0.20)
        w.at_most_in("a", 0.02)  # earlier: replaces
        w.at_most_in("a", 5.0)  # later: ignored
        w.at_most_in("b", 0.05)
        w.at_most_in("c", 0.01)
        w.cancel("c")
        assert len(w) == 2
        await asyncio.sleep(0.3)
        assert len(w) == 0
        return fired

    assert asyncio.run(story()) == ["a", "b"]
