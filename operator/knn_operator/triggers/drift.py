"""The drift trigger: when to measure, how a measurement moves the hold, and when a
hold that lasted `for` makes a rebuild. Pure.

Like a Prometheus alert's `for`, every measurement in the hold must be above the
threshold; a value at or below it, no data or a query error ends the hold (a
trigger is never fired on data it does not have). A hold also ends when the stable
revision changes, or when measurements stopped for longer than MAX_GAP intervals
(while a build or a rollout ran): it is about what is served now.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from knn_contracts import rollout as names

from ..analysis.provider import NoData, QueryError, Sample, Value
from ..events import Event
from ..models.rebuild import DriftStatus, OnDrift
from ..timeutil import duration_seconds, iso, parse_iso

MAX_GAP = 3  # intervals without a measurement that end a hold


@dataclass(frozen=True)
class DriftReading:
    """One measurement of the stable revision's drift, taken by the kind's prepare step."""

    revision: str
    at: dt.datetime
    sample: Sample


def render(query: str, values: Mapping[str, str]) -> str:
    """A custom drift query with {{key}} replaced by the object's names."""
    for key, value in values.items():
        query = query.replace("{{" + key + "}}", value)
    return query


def next_due(on: OnDrift, last: DriftStatus | None, stable: str) -> dt.datetime | None:
    """When the stable revision is to be measured next; None: now."""
    if last is None or last.revision != stable:
        return None
    at = parse_iso(last.at)
    return None if at is None else at + dt.timedelta(seconds=duration_seconds(on.interval))


def is_due(on: OnDrift, last: DriftStatus | None, stable: str, now: dt.datetime) -> bool:
    due = next_due(on, last, stable)
    return due is None or due <= now


def _holding(on: OnDrift, last: DriftStatus | None, reading: DriftReading) -> str | None:
    """The hold's start carried over from the previous measurement, if it goes on."""
    if last is None or last.result != "Above" or last.revision != reading.revision:
        return None
    at = parse_iso(last.at)
    gap = MAX_GAP * duration_seconds(on.interval)
    if at is None or (reading.at - at).total_seconds() > gap:
        return None
    return last.above_since


def fold(
    on: OnDrift, last: DriftStatus | None, reading: DriftReading
) -> tuple[DriftStatus, list[Event]]:
    """The drift status after `reading`, and the Events for what changed."""
    s, rev, at = reading.sample, reading.revision, iso(reading.at)
    if isinstance(s, Value) and s.value > on.threshold:
        since = _holding(on, last, reading)
        message = f"drift {s.value:.4g} of revision {rev} is above {on.threshold:g}"
        new = DriftStatus(
            revision=rev, result="Above", value=s.value, at=at, above_since=since or at,
            message=message,
        )  # fmt: skip
        if since is not None:
            return new, []
        hold = f"; a rebuild follows if it stays above for {on.for_}"
        return new, [Event("Warning", names.EVENT_DRIFT_DETECTED, message + hold)]
    if isinstance(s, Value):
        message = f"drift {s.value:.4g} of revision {rev} is at or below {on.threshold:g}"
        return DriftStatus(revision=rev, result="Below", value=s.value, at=at, message=message), []
    if isinstance(s, NoData):
        message = f"no drift value for revision {rev} ({s.reason}): no live traffic yet?"
        return DriftStatus(revision=rev, result="NoData", at=at, message=message), []
    assert isinstance(s, QueryError)
    message = f"drift of revision {rev} not measured: {s.message}"[:1024]
    new = DriftStatus(revision=rev, result="Error", at=at, message=message)
    if last is not None and last.result == "Error" and last.message == message:
        return new, []
    return new, [Event("Warning", names.EVENT_DRIFT_UNMEASURED, message)]


@dataclass(frozen=True)
class DriftTrigger:
    value: float
    message: str


def decide(
    on: OnDrift, drift: DriftStatus, build_started: dt.datetime | None, now: dt.datetime
) -> DriftTrigger | None:
    """A rebuild when the hold has lasted `for` and the current version's build
    started at least minInterval ago."""
    since = parse_iso(drift.above_since)
    if drift.result != "Above" or drift.value is None or since is None:
        return None
    if (now - since).total_seconds() < duration_seconds(on.for_):
        return None
    waited = None if build_started is None else (now - build_started).total_seconds()
    if waited is not None and waited < duration_seconds(on.min_interval):
        return None
    held = f"drift {drift.value:.4g} above {on.threshold:g} since {drift.above_since}"
    return DriftTrigger(drift.value, f"{held} (for {on.for_})")
