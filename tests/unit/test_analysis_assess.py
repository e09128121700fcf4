"""judge → tally → assess: boundaries, no data, errors, limits, severity order."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from knn_contracts.rollout import MeasurementResult as Result
from knn_operator.analysis import (
    SEVERITY,
    Check,
    CheckResult,
    Limits,
    NoData,
    QueryError,
    Tally,
    Value,
    assess,
    is_worse,
    judge,
    record,
    tally,
    tally_of,
    worst,
)

LAT = Check("latency-p95", "v2", "q", max=50.0, unit="ms")
REC = Check("recall", "v2", "q", min=0.95)
BAND = Check("qps", "v2", "q", min=1.0, max=10.0)


@pytest.mark.parametrize(
    ("check", "value", "result"),
    [
        (LAT, 50.0, "Successful"),  # value == limit passes: limits are inclusive
        (LAT, 50.000001, "Failed"),
        (LAT, 0.0, "Successful"),
        (REC, 0.95, "Successful"),
        (REC, 0.9499999, "Failed"),
        (BAND, 1.0, "Successful"),
        (BAND, 10.0, "Successful"),
        (BAND, 0.5, "Failed"),
        (BAND, 10.5, "Failed"),
    ],
)
def test_judge_at_the_boundaries(check: Check, value: float, result: Result) -> None:
    r = judge(check, Value(value))
    assert (r.result, r.value, r.check, r.revision) == (result, value, check.name, "v2")
    assert r.limit == check.limit()


def test_judge_messages_name_check_value_and_limit() -> None:
    assert judge(LAT, Value(72.5)).message == "latency-p95 72.5 ms, limit <= 50 ms"
    assert judge(REC, Value(0.97)).message == "recall 0.97 within >= 0.95"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_non_finite_value_is_never_judged_as_a_number(value: float) -> None:
    r = judge(LAT, Value(value))
    assert (r.result, r.value) == ("Inconclusive", None)


def test_no_data_is_inconclusive_and_an_error_is_an_error() -> None:
    r = judge(REC, NoData("no series"))
    assert (r.result, r.value, r.message) == ("Inconclusive", None, "recall: no data (no series)")
    r = judge(REC, QueryError("HTTP 401: Prometheus unauthorized error: x"))
    assert (r.result, r.value) == ("Error", None)
    assert "401" in r.message


def test_severity_order() -> None:
    assert SEVERITY == ("Successful", "Inconclusive", "Error", "Failed")
    assert is_worse("Successful", "Inconclusive")
    assert is_worse("Inconclusive", "Error")
    assert is_worse("Error", "Failed")
    assert not is_worse("Failed", "Error")
    assert not is_worse("Error", "Error")
    assert worst([]) is None
    assert worst(["Successful", "Failed", "Inconclusive"]) == "Failed"
    assert worst(["Inconclusive", "Error", "Successful"]) == "Error"


def res(*results: Result) -> list[CheckResult]:
    return [CheckResult(f"c{i}", "v2", r, None, "", f"c{i} {r}") for i, r in enumerate(results)]


def run(*runs: Sequence[Result]) -> Tally:
    t = Tally()
    for r in runs:
        t = tally(t, res(*r))
    return t


S: Result = "Successful"
N: Result = "Inconclusive"  # no data
E: Result = "Error"
F: Result = "Failed"


def test_a_run_counts_once_as_its_worst_check() -> None:
    t = run([S, F, F, N])
    assert (t.runs, t.failures, t.inconclusive, t.last) == (1, 1, 0, F)
    assert t.last_reason == "c1 Failed"


def test_an_empty_run_is_no_run() -> None:
    assert tally(Tally(), []) == Tally()


def test_consecutive_errors_reset_on_any_answered_run() -> None:
    t = run([E], [E], [S, E])
    assert (t.errors, t.consecutive_errors) == (3, 3)
    assert run([E], [E], [S]).consecutive_errors == 0
    assert run([E], [E], [N]).consecutive_errors == 0  # Prometheus answered: no data
    assert run([E], [E], [F]).consecutive_errors == 0
    assert run([E], [S], [E]).consecutive_errors == 1


LIMITS = Limits(
    failure_limit=1, inconclusive_limit=2, on_inconclusive="Abort", consecutive_error_limit=2
)


@pytest.mark.parametrize(
    ("runs", "limits", "decision", "reason"),
    [
        ([], LIMITS, "Wait", "AnalysisWaiting"),  # zero runs never pass
        ([[S]], LIMITS, "Pass", "AnalysisPassed"),
        ([[S, N]], LIMITS, "Wait", "AnalysisWaiting"),  # no data is not a pass
        ([[S, E]], LIMITS, "Wait", "AnalysisWaiting"),
        ([[F]], LIMITS, "Wait", "AnalysisWaiting"),  # within failureLimit 1, but no pass
        ([[F], [S]], LIMITS, "Pass", "AnalysisPassed"),
        ([[F], [F]], LIMITS, "Abort", "AnalysisFailed"),
        ([[F]], Limits(failure_limit=0), "Abort", "AnalysisFailed"),  # 0: first failure aborts
        ([[S], [S], [F]], Limits(failure_limit=0), "Abort", "AnalysisFailed"),
        ([[N], [N]], LIMITS, "Wait", "AnalysisWaiting"),
        ([[N], [N], [N]], LIMITS, "Abort", "AnalysisInconclusive"),
        ([[N], [S], [N], [S], [N]], LIMITS, "Abort", "AnalysisInconclusive"),  # in total
        (
            [[N], [N], [N]],
            Limits(inconclusive_limit=2, on_inconclusive="Pause"),
            "Pause",
            "AnalysisInconclusive",
        ),
        ([[E], [E]], LIMITS, "Wait", "AnalysisWaiting"),
        ([[E], [E], [E]], LIMITS, "Abort", "AnalysisErrors"),
        (
            [[E], [E], [E]],
            Limits(consecutive_error_limit=2, on_inconclusive="Pause"),
            "Pause",
            "AnalysisErrors",
        ),
        ([[E], [E], [S], [E], [E]], LIMITS, "Wait", "AnalysisWaiting"),  # reset by a success
        ([[N], [N], [N], [F], [F]], LIMITS, "Abort", "AnalysisFailed"),  # Abort beats Pause
        (
            [[N], [N], [N], [F], [F]],
            Limits(failure_limit=1, inconclusive_limit=2, on_inconclusive="Pause"),
            "Abort",
            "AnalysisFailed",
        ),
    ],
)
def test_assess(runs: list[list[Result]], limits: Limits, decision: str, reason: str) -> None:
    a = assess(run(*runs), limits)
    assert (a.decision, a.reason) == (decision, reason), a.message


def test_the_abort_message_says_which_check_which_value_which_limit() -> None:
    t = tally(Tally(), [judge(REC, Value(0.91)), judge(LAT, Value(12.0))])
    a = assess(t, Limits(failure_limit=0))
    assert a.decision == "Abort"
    assert a.message == "1 failed runs exceed failureLimit 0; last: recall 0.91, limit >= 0.95"


def test_status_round_trip_and_bound() -> None:
    now = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    st = None
    for i in range(30):
        st = record(st, "v2", [judge(REC, Value(0.96)), judge(LAT, Value(float(i)))], now)
    assert st is not None
    assert len(st.last_measurements) == 50
    assert st.last_measurements[-1].value == 29.0
    assert st.last_measurements[-1].at == "2025-01-02T03:04:05Z"
    assert (st.runs, st.last_result, st.revision) == (30, "Successful", "v2")
    t = tally_of(st, "v2")
    assert t == Tally(runs=30, last="Successful", last_reason=st.message or "")
    assert tally_of(st, "v3") == Tally()  # a new canary starts from zero
    st = record(st, "v3", [judge(REC, NoData("no series"))], now)
    assert (st.runs, st.inconclusive, len(st.last_measurements)) == (1, 1, 1)
    assert assess(tally_of(st, "v3"), Limits()).decision == "Wait"
