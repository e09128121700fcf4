"""Cron schedules: parsing (cronsim, which follows Debian's cron), the CRD's shape
check, and the fire times the planner needs. Pure; times are aware UTC datetimes.

cronsim rather than croniter: no dependencies, strict (an impossible date such as
'0 0 30 2 *' is refused when parsed, not found to never fire), reverse iteration
and an optional leading seconds field, released steadily by the maintainer of
Healthchecks, which runs on it. It does not know the @daily macros: they are
expanded here, as Kubernetes CronJobs accept them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cronsim import CronSim, CronSimError

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class CronError(ValueError):
    """A schedule cronsim refuses; the message names the expression and the field."""


def _field(value: str, *extra: str) -> str:
    """One field for the CRD's regular expression (RE2): a list of `*`, values or
    ranges, each with an optional /step, or one of `extra`."""
    item = rf"(\*|({value})(-({value}))?)(/[0-9]{{1,2}})?"
    if extra:
        item = "(" + "|".join((item, *extra)) + ")"
    return rf"{item}(,{item})*"


_SIXTY = "[0-5]?[0-9]"
_HOUR = "[01]?[0-9]|2[0-3]"
_DOM = "0?[1-9]|[12][0-9]|3[01]"
_MONTH = "0?[1-9]|1[0-2]|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec"
_DOW = "[0-7]|sun|mon|tue|wed|thu|fri|sat"
_FIELDS = (
    _field(_SIXTY),
    _field(_HOUR),
    _field(_DOM, "L", "LW"),
    _field(_MONTH),
    _field(_DOW, f"({_DOW})#[1-5]", "[0-7]L"),
)
# The shape the API server checks (CEL): the value ranges of every field, names,
# steps, lists and cronsim's L, LW and #. cronsim itself is the last word.
CRON_PATTERN = (
    "(?i)^(@(" + "|".join(m[1:] for m in MACROS) + ")|"
    f"({_field(_SIXTY)}[ \\t]+)?" + "[ \\t]+".join(_FIELDS) + ")$"
)


@dataclass(frozen=True)
class Schedule:
    expression: str  # as the user wrote it
    cron: str  # macros expanded

    def next_after(self, when: dt.datetime) -> dt.datetime | None:
        """The first fire strictly after `when` (None: none within cronsim's 50 years)."""
        try:
            return next(CronSim(self.cron, when.astimezone(dt.UTC)))
        except StopIteration:
            return None

    def latest_at_or_before(self, when: dt.datetime) -> dt.datetime | None:
        # Reverse iteration yields fires strictly before its start: start a second later.
        start = when.astimezone(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=1)
        try:
            return next(CronSim(self.cron, start, reverse=True))
        except StopIteration:
            return None


def parse_schedule(expression: str) -> Schedule:
    cron = MACROS.get(expression.strip().lower(), expression.strip())
    try:
        CronSim(cron, dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    except CronSimError as e:
        why = f"rebuild.schedule {expression!r} is not a valid cron expression: {e}"
        raise CronError(why) from e
    return Schedule(expression, cron)


@dataclass(frozen=True)
class Due:
    """Fires since `anchor` up to now: the first and latest of them, how many."""

    first: dt.datetime
    latest: dt.datetime
    missed: int


MAX_COUNTED = 1000  # fires counted for the record; beyond, "1000 or more"


def due_since(schedule: Schedule, anchor: dt.datetime, now: dt.datetime) -> Due | None:
    """The fires after `anchor` and at or before `now`, or None when there is none yet."""
    fires = CronSim(schedule.cron, anchor.astimezone(dt.UTC))
    first = next(fires, None)
    if first is None or first > now:
        return None
    latest, count = first, 1
    for at in fires:
        if at > now:
            break
        latest, count = at, count + 1
        if count >= MAX_COUNTED:
            latest = schedule.latest_at_or_before(now) or at
            break
    return Due(first, latest, count)
