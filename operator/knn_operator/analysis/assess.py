"""The assessment: pure functions from samples to results, results to tallies,
tallies to a decision. No I/O; time never enters (the caller stamps results).

Severity order, best to worst: Successful < Inconclusive < Error < Failed (Argo
Rollouts' IsWorse order without its running states). A run (every check
evaluated once) counts as its worst check: tallies count runs, as Flagger's
failed-checks counter does, so two checks failing in one run are one failure.

Limits (Argo semantics): a limit is the number tolerated, so `failureLimit: 0`
aborts on the first failed run. Inconclusive runs count in total; consecutive
errors reset on any run whose queries all got an answer (Argo resets on every
completed measurement). A breached error limit means Prometheus cannot say: it is
treated like too many inconclusive runs (onInconclusive: Pause or Abort), never
as a pass. Decisions, most severe first: Abort, Pause, Wait, Pass. Only Pass lets
a step advance: it needs a latest run that was Successful, so zero runs, or a
latest run that was inconclusive, failed within the limit or errored, never pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from knn_contracts import rollout as names
from knn_contracts.rollout import MeasurementResult as Result

from ..models.knnindex import Analysis
from .checks import Check
from .provider import NoData, QueryError, Sample, Value

SEVERITY: tuple[Result, ...] = names.RESULTS  # best to worst
Decision = Literal["Pass", "Wait", "Pause", "Abort"]


def is_worse(current: Result, new: Result) -> bool:
    return SEVERITY.index(new) > SEVERITY.index(current)


def worst(results: Sequence[Result]) -> Result | None:
    out: Result | None = None
    for r in results:
        if out is None or is_worse(out, r):
            out = r
    return out


@dataclass(frozen=True)
class CheckResult:
    check: str
    revision: str
    result: Result
    value: float | None
    limit: str
    message: str


def judge(check: Check, sample: Sample) -> CheckResult:
    """One sample against its check's limits (inclusive)."""
    limit = check.limit()

    def result(r: Result, value: float | None, message: str) -> CheckResult:
        return CheckResult(check.name, check.revision, r, value, limit, message)

    if isinstance(sample, QueryError):
        return result(names.RESULT_ERROR, None, f"{check.name}: {sample.message}")
    if isinstance(sample, NoData):
        return result(names.RESULT_INCONCLUSIVE, None, f"{check.name}: no data ({sample.reason})")
    assert isinstance(sample, Value)
    v = sample.value
    if not math.isfinite(v):  # providers map these to NoData; never judge one as a number
        return result(names.RESULT_INCONCLUSIVE, None, f"{check.name}: no data ({v})")
    shown = f"{check.name} {v:.6g}{' ' + check.unit if check.unit else ''}"
    if (check.min is not None and v < check.min) or (check.max is not None and v > check.max):
        return result(names.RESULT_FAILED, v, f"{shown}, limit {limit}")
    return result(names.RESULT_SUCCESSFUL, v, f"{shown} within {limit}")


@dataclass(frozen=True)
class Tally:
    runs: int = 0
    failures: int = 0
    inconclusive: int = 0
    errors: int = 0
    consecutive_errors: int = 0
    last: Result | None = None  # the latest run's worst result
    last_reason: str = ""  # the message of that run's worst check


def tally(previous: Tally, results: Sequence[CheckResult]) -> Tally:
    """Add one run. A run with no results is no run: the tally does not move."""
    w = worst([r.result for r in results])
    if w is None:
        return previous
    reason = next(r.message for r in results if r.result == w)
    t = replace(previous, runs=previous.runs + 1, last=w, last_reason=reason)
    if w == names.RESULT_ERROR:
        return replace(t, errors=t.errors + 1, consecutive_errors=t.consecutive_errors + 1)
    t = replace(t, consecutive_errors=0)
    if w == names.RESULT_FAILED:
        return replace(t, failures=t.failures + 1)
    if w == names.RESULT_INCONCLUSIVE:
        return replace(t, inconclusive=t.inconclusive + 1)
    return t


@dataclass(frozen=True)
class Limits:
    failure_limit: int = 1
    inconclusive_limit: int = 3
    on_inconclusive: Literal["Pause", "Abort"] = "Abort"
    consecutive_error_limit: int = 4

    @classmethod
    def of(cls, analysis: Analysis) -> Limits:
        return cls(
            analysis.failure_limit,
            analysis.inconclusive_limit,
            analysis.on_inconclusive,
            analysis.consecutive_error_limit,
        )


@dataclass(frozen=True)
class Assessment:
    decision: Decision
    reason: str  # condition/Event reason (knn_contracts.rollout.REASON_*)
    message: str  # which check, which value, which limit


def assess(t: Tally, limits: Limits) -> Assessment:
    """The decision for a tally; the most severe breached limit wins."""
    last = f"; last: {t.last_reason}" if t.last_reason else ""
    if t.failures > limits.failure_limit:
        msg = f"{t.failures} failed runs exceed failureLimit {limits.failure_limit}{last}"
        return Assessment("Abort", names.REASON_ANALYSIS_FAILED, msg)
    breaches: list[tuple[str, str]] = []
    if t.consecutive_errors > limits.consecutive_error_limit:
        msg = (
            f"{t.consecutive_errors} consecutive runs with Prometheus errors exceed "
            f"consecutiveErrorLimit {limits.consecutive_error_limit}{last}"
        )
        breaches.append((names.REASON_ANALYSIS_ERRORS, msg))
    if t.inconclusive > limits.inconclusive_limit:
        msg = (
            f"{t.inconclusive} inconclusive runs exceed inconclusiveLimit "
            f"{limits.inconclusive_limit}{last}"
        )
        breaches.append((names.REASON_ANALYSIS_INCONCLUSIVE, msg))
    if breaches:
        reason, msg = breaches[0]
        return Assessment(limits.on_inconclusive, reason, f"{msg} (onInconclusive)")
    if t.last is None:
        return Assessment("Wait", names.REASON_ANALYSIS_WAITING, "no analysis run yet")
    if t.last != names.RESULT_SUCCESSFUL:
        msg = f"latest run {t.last}, within limits{last}"
        return Assessment("Wait", names.REASON_ANALYSIS_WAITING, msg)
    return Assessment(
        "Pass", names.REASON_ANALYSIS_PASSED, f"latest run Successful ({t.runs} runs)"
    )
