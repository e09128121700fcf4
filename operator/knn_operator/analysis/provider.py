"""What a metric provider answers, and the Protocol every provider implements.

Three outcomes, never conflated (Flagger's "no values" is an error, never 0):
a value; no data (no series, NaN, ±Inf: the assessment calls it Inconclusive,
never a pass); an error (unreachable, timed out, refused, unparsable: Error).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Value:
    value: float  # finite


@dataclass(frozen=True)
class NoData:
    reason: str  # "no series", "NaN", ...


@dataclass(frozen=True)
class QueryError:
    message: str  # says what failed: HTTP status, Prometheus' error, timeout


Sample = Value | NoData | QueryError


class MetricProvider(Protocol):
    async def query(self, promql: str) -> Sample:
        """Evaluate one instant query; never raises for a provider failure."""
        ...
