"""status.analysis ⇄ tallies: what a run adds to status, bounded, and what status says.

All state lives in status, so a restarted operator continues from it: the tally
is read back from the counters written here. A new canary revision starts from
zero. The newest measurements are kept, at most MAX_MEASUREMENTS.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ..models.knnindex import MAX_MEASUREMENTS, AnalysisStatus, Measurement
from .assess import CheckResult, Tally, tally


def tally_of(status: AnalysisStatus | None, revision: str) -> Tally:
    """The tally status holds for `revision` (zero for another revision or none)."""
    if status is None or status.revision != revision:
        return Tally()
    return Tally(
        runs=status.runs,
        failures=status.failures,
        inconclusive=status.inconclusive,
        errors=status.errors,
        consecutive_errors=status.consecutive_errors,
        last=status.last_result,
        last_reason=status.message or "",
    )


def _timestamp(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def record(
    status: AnalysisStatus | None, revision: str, results: Sequence[CheckResult], now: datetime
) -> AnalysisStatus:
    """Status after one run of `revision` at `now` (UTC)."""
    t = tally(tally_of(status, revision), results)
    at = _timestamp(now)
    new = [
        Measurement(
            check=r.check,
            revision=r.revision,
            value=r.value,
            result=r.result,
            limit=r.limit,
            message=r.message,
            at=at,
        )
        for r in results
    ]
    kept = status.last_measurements if status is not None and status.revision == revision else []
    return AnalysisStatus(
        revision=revision,
        runs=t.runs,
        failures=t.failures,
        inconclusive=t.inconclusive,
        errors=t.errors,
        consecutive_errors=t.consecutive_errors,
        last_result=t.last,
        last_run=at,
        message=t.last_reason or None,
        last_measurements=[*kept, *new][-MAX_MEASUREMENTS:],
    )
