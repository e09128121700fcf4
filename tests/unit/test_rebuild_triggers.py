"""Retraining triggers, pure: cron fire times, missed fires caught up as one, a drift
that must hold for its duration, the minimum interval, and schedules refused with a
message. The planner gets `now` as data, so hours and days pass in a test."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace
from typing import Any

import pytest
from knn_operator.analysis.provider import NoData, QueryError, Value
from knn_operator.models.knnindex import KnnIndexSpec, WorkloadStatus
from knn_operator.models.rebuild import Rebuild
from knn_operator.observe import JobState
from knn_operator.planning import Observed, Plan, plan
from knn_operator.planning.rebuilds import drift_due
from knn_operator.triggers.cron import CRON_PATTERN, CronError, due_since, parse_schedule
from knn_operator.triggers.drift import DriftReading
from knn_operator.versioning import version_of
from pydantic import ValidationError

from tests.unit.test_operator_planning import SETTINGS, dep, done_job, observed

T0 = dt.datetime(2026, 11, 22, 0, 0, tzinfo=dt.UTC)
PROM = {"address": "http://prometheus.monitoring:9090"}


def at(hours: float = 0, minutes: float = 0, seconds: float = 0) -> dt.datetime:
    return T0 + dt.timedelta(hours=hours, minutes=minutes, seconds=seconds)


def spec(**rebuild: Any) -> KnnIndexSpec:
    return KnnIndexSpec.model_validate(
        {
            "source": {"uri": "s3://b/emb.npy", "dimension": 8},
            "storage": {"uri": "s3://artifacts/products"},
            "rebuild": rebuild,
        }
    )


def serving(s: KnnIndexSpec, when: dt.datetime = T0) -> tuple[str, WorkloadStatus]:
    """An index whose first version was built (its Job started at `when`) and serves."""
    v = version_of(s)
    st = plan(observed(s), SETTINGS, when).status
    st = plan(observed(s, st, {v: done_job(v)}), SETTINGS, when).status
    st = plan(observed(s, st, {v: done_job(v)}, {v: dep(v, 2)}), SETTINGS, when).status
    assert st.phase == "Serving" and st.stable_version == v
    return v, st


def reasons(p: Plan) -> list[str]:
    return [e.reason for e in p.events]


def jobs(p: Plan) -> list[str]:
    return [o["metadata"]["name"] for o in p.apply if o["kind"] == "Job"]


# --- cron -----------------------------------------------------------------------------


def test_next_fire_times_follow_the_cron_expression() -> None:
    daily = parse_schedule("0 3 * * *")
    assert daily.next_after(at(2, 59, 59)) == at(3)
    assert daily.next_after(at(3)) == at(27), "strictly after"
    assert daily.latest_at_or_before(at(3)) == at(3)
    assert daily.latest_at_or_before(at(2, 59)) == at(-21)
    assert parse_schedule("@hourly").next_after(at(0, 30)) == at(1)
    assert parse_schedule("*/10 * * * * *").next_after(at(0, 0, 3)) == at(0, 0, 10), "seconds"


def test_fires_missed_while_away_are_counted_and_caught_up_as_one() -> None:
    daily = parse_schedule("0 3 * * *")
    assert due_since(daily, at(0), at(2)) is None
    due = due_since(daily, at(0), at(24 * 3 + 4))
    assert due is not None
    assert (due.first, due.latest, due.missed) == (at(3), at(75), 4)


@pytest.mark.parametrize(
    ("expression", "why"),
    [
        ("61 * * * *", "Bad minute"),
        ("0 24 * * *", "Bad hour"),
        ("0 0 30 2 *", "Bad day-of-month"),  # never fires: refused, not silently idle
        ("* * *", "Wrong number of fields"),
        ("every day", "Wrong number of fields"),
    ],
)
def test_an_invalid_schedule_is_refused_with_a_message_naming_it(expression: str, why: str) -> None:
    with pytest.raises(ValidationError) as e:
        Rebuild.model_validate({"schedule": expression})
    assert f"rebuild.schedule {expression!r} is not a valid cron expression: {why}" in str(e.value)
    with pytest.raises(CronError):
        parse_schedule(expression)


@pytest.mark.parametrize(
    "expression",
    ["0 3 * * *", "*/15 0-6,22 1 jan-mar mon-fri", "0 0 L * *", "0 0 * * MON#1", "0 0 * * 5L",
     "*/10 * * * * *", "@daily", "@weekly"],
)  # fmt: skip
def test_the_crd_pattern_accepts_what_cronsim_accepts(expression: str) -> None:
    assert re.match(CRON_PATTERN, expression)
    parse_schedule(expression)


@pytest.mark.parametrize(
    "expression", ["61 * * * *", "0 24 * * *", "0 0 32 * *", "0 0 * 13 *", "0 0 * * 8", "* * *",
                   "* * * * * * *", "@reboot", "0 3 * * * ; rm"],
)  # fmt: skip
def test_the_crd_pattern_refuses_out_of_range_values(expression: str) -> None:
    assert not re.match(CRON_PATTERN, expression)


# --- schedule in the planner ----------------------------------------------------------


def test_the_schedule_makes_a_new_version_at_its_fire_time_and_asks_to_wake_for_it() -> None:
    s = spec(schedule="0 3 * * *")
    v, st = serving(s)
    before = plan(observed(s, st, {v: done_job(v)}, {v: dep(v, 2)}), SETTINGS, at(2, 59))
    assert jobs(before) == [] and before.status.last_rebuild is None
    assert before.requeue_after == 60.0, "the reconciler wakes at the fire time"
    assert before.status.next_scheduled_rebuild == "2026-11-22T03:00:00Z"

    p = plan(observed(s, st, {v: done_job(v)}, {v: dep(v, 2)}), SETTINGS, at(3, 0, 5))
    v2 = version_of(s, None, "schedule@2026-11-22T03:00:00Z")  # named by the fire time
    assert v2 != v and jobs(p) == [f"products-build-{v2}"]
    last = p.status.last_rebuild
    assert last is not None and (last.reason, last.version, last.missed) == ("Schedule", v2, 1)
    assert last.fire == "2026-11-22T03:00:00Z"
    assert reasons(p)[:1] == ["ScheduledRebuild"] and "BuildStarted" in reasons(p)
    assert p.triggers == ["Schedule"] and before.triggers == [], "counted by the reconciler"
    assert p.status.target_version == v2 and p.status.stable_version == v, "old one serves"
    assert p.status.next_scheduled_rebuild == "2026-11-23T03:00:00Z"


def test_missed_fires_make_one_rebuild_and_the_next_pass_none() -> None:
    s = spec(schedule="0 3 * * *")
    v, st = serving(s)
    back = at(24 * 3 + 3, 30)  # the operator was down for three days and a half
    p = plan(observed(s, st, {v: done_job(v)}, {v: dep(v, 2)}), SETTINGS, back)
    assert reasons(p).count("ScheduledRebuild") == 1 and len(jobs(p)) == 1
    last = p.status.last_rebuild
    assert last is not None and last.missed == 4 and last.fire == "2026-11-25T03:00:00Z"
    assert "4 fires since the last build, caught up as one" in p.events[0].message
    v2 = last.version
    again = plan(observed(s, p.status, {v: done_job(v)}, {v: dep(v, 2)}), SETTINGS, back)
    assert "ScheduledRebuild" not in reasons(again) and again.status.target_version == v2
    # The new build finishes and serves; the fires before it started are not due again.
    st2 = again.status
    for _ in range(3):
        st2 = plan(
            observed(s, st2, {v: done_job(v), v2: done_job(v2)}, {v: dep(v, 2), v2: dep(v2, 2)}),
            SETTINGS,
            back,
        ).status
    assert st2.stable_version == v2 and st2.phase == "Serving"
    later = plan(observed(s, st2, {v2: done_job(v2)}, {v2: dep(v2, 2)}), SETTINGS, at(24 * 4))
    assert "ScheduledRebuild" not in reasons(later)


def test_a_fire_during_a_build_waits_for_it_and_then_rebuilds_once() -> None:
    s = spec(schedule="*/5 * * * *")
    v = version_of(s)
    st = plan(observed(s), SETTINGS, at(0, 1)).status  # building since 00:01
    running = {v: JobState(f"products-build-{v}", v, False, False, "", None, "")}
    p = plan(observed(s, st, running), SETTINGS, at(0, 7))  # 00:05 fired meanwhile
    assert "ScheduledRebuild" not in reasons(p) and p.status.target_version == v
    assert p.requeue_after is not None and p.requeue_after <= 60
    st = plan(observed(s, p.status, {v: done_job(v)}), SETTINGS, at(0, 8)).status
    st = plan(observed(s, st, {v: done_job(v)}, {v: dep(v, 2)}), SETTINGS, at(0, 8)).status
    assert st.phase == "Serving"
    p = plan(observed(s, st, {v: done_job(v)}, {v: dep(v, 2)}), SETTINGS, at(0, 9))
    assert reasons(p).count("ScheduledRebuild") == 1
    assert (
        p.status.last_rebuild is not None and p.status.last_rebuild.fire == "2026-11-22T00:05:00Z"
    )


def test_versions_without_a_trigger_keep_their_ids() -> None:
    s = spec()
    assert version_of(s) == version_of(s, None, None)
    assert version_of(s, None, "schedule@x") != version_of(s, None, "drift@x")


# --- drift ----------------------------------------------------------------------------


def drift_spec(**on: Any) -> KnnIndexSpec:
    settings = {"threshold": 1.5, "for": "5m", "minInterval": "1h", "interval": "1m"}
    return spec(onDrift={**settings, "prometheus": PROM, **on})


def measured(obs: Observed, value: float | None, when: dt.datetime, error: str = "") -> Observed:
    rev = obs.status.stable_revision
    assert rev is not None
    sample = QueryError(error) if error else Value(value) if value is not None else NoData("none")
    return replace(obs, drift=DriftReading(rev, when, sample))


class Drifting:
    """An index serving since T0, measured minute by minute."""

    def __init__(self, s: KnnIndexSpec, built: dt.datetime = T0) -> None:
        self.s = s
        self.v, self.status = serving(s, built)

    def measure(self, value: float | None, when: dt.datetime, error: str = "") -> Plan:
        v = self.v
        obs = observed(self.s, self.status, {v: done_job(v)}, {v: dep(v, 2)})
        p = plan(measured(obs, value, when, error), SETTINGS, when)
        self.status = p.status
        return p


def test_drift_must_hold_above_the_threshold_for_its_duration() -> None:
    d = Drifting(drift_spec(), built=at(-2))
    p = d.measure(2.5, at(0))
    assert reasons(p) == ["DriftDetected"] and jobs(p) == []
    assert d.status.drift is not None and d.status.drift.above_since == "2026-11-22T00:00:00Z"
    for minute in range(1, 5):
        p = d.measure(2.0, at(0, minute))
        assert reasons(p) == [] and jobs(p) == [], f"held only {minute} minutes"
    p = d.measure(1.9, at(0, 5))
    assert "DriftRebuild" in reasons(p) and len(jobs(p)) == 1
    last = d.status.last_rebuild
    assert last is not None and last.reason == "Drift" and last.value == 1.9
    event = next(e for e in p.events if e.reason == "DriftRebuild")
    assert "drift 1.9 above 1.5" in event.message and last.version in event.message


@pytest.mark.parametrize(
    ("value", "error"), [(1.2, ""), (None, ""), (None, "HTTP 503: Prometheus unavailable")]
)
def test_a_value_below_no_data_or_an_error_starts_the_hold_again(
    value: float | None, error: str
) -> None:
    d = Drifting(drift_spec(), built=at(-2))
    d.measure(2.5, at(0))
    d.measure(2.5, at(0, 3))
    p = d.measure(value, at(0, 4), error)
    assert d.status.drift is not None and d.status.drift.above_since is None
    assert ("DriftUnmeasured" in reasons(p)) == bool(error)
    d.measure(2.5, at(0, 5))
    p = d.measure(2.5, at(0, 6))
    assert jobs(p) == [], "the hold restarted at 00:05"
    for minute in range(7, 10):
        assert jobs(d.measure(2.5, at(0, minute))) == []
    assert "DriftRebuild" in reasons(d.measure(2.5, at(0, 10)))


def test_a_gap_in_the_measurements_starts_the_hold_again() -> None:
    d = Drifting(drift_spec(), built=at(-2))
    d.measure(2.5, at(0))
    p = d.measure(2.5, at(0, 10))  # nothing measured for ten intervals
    assert jobs(p) == [] and reasons(p) == ["DriftDetected"]
    assert d.status.drift is not None and d.status.drift.above_since == "2026-11-22T00:10:00Z"


def test_a_drift_rebuild_waits_for_the_minimum_interval_since_the_last_build() -> None:
    d = Drifting(drift_spec(**{"for": "0s", "minInterval": "30m"}), built=at(0))
    p = d.measure(3.0, at(0, 10))
    assert jobs(p) == [] and d.status.drift is not None and d.status.drift.result == "Above"
    p = d.measure(3.0, at(0, 29))
    assert jobs(p) == []
    p = d.measure(3.0, at(0, 30))
    assert "DriftRebuild" in reasons(p) and len(jobs(p)) == 1


def test_drift_is_measured_once_per_interval_and_not_while_a_build_runs() -> None:
    d = Drifting(drift_spec())
    obs = observed(d.s, d.status, {d.v: done_job(d.v)}, {d.v: dep(d.v, 2)})
    assert drift_due(obs, at(0, 1)) == d.status.stable_revision, "never measured: due"
    p = d.measure(1.0, at(0, 1))
    assert p.requeue_after == 60.0
    obs = observed(d.s, d.status, {d.v: done_job(d.v)}, {d.v: dep(d.v, 2)})
    assert drift_due(obs, at(0, 1, 30)) is None
    assert drift_due(obs, at(0, 2)) == d.status.stable_revision
    building = replace(obs, annotations={}, rebuild_annotation="again")
    st = plan(building, SETTINGS, at(0, 2)).status
    assert st.builds[-1].outcome == "Building"
    assert drift_due(replace(building, status=st), at(0, 5)) is None


def test_credentials_of_the_drift_prometheus_name_its_own_field() -> None:
    from knn_operator.analysis.credentials import CredentialsError, resolve
    from knn_operator.models.prometheus import PrometheusProvider

    provider = PrometheusProvider.model_validate(
        {**PROM, "auth": {"secretName": "prom", "bearerTokenKey": "token"}}
    )
    with pytest.raises(CredentialsError, match=r"spec\.rebuild\.onDrift\.prometheus\.auth"):
        resolve(provider, {"prom": None}, "spec.rebuild.onDrift.prometheus")


def test_the_decision_is_kind_neutral_and_the_schedule_wins_over_drift() -> None:
    from knn_operator.triggers.decide import Inputs, busy, decide

    assert busy(None, False, False) == "a build is in progress"
    assert busy("Succeeded", True, True) == "a rollout is in progress"
    assert busy("Failed", False, True) is None, "a failed build holds nothing back"
    assert busy("Succeeded", False, True) is None
    rebuild = Rebuild.model_validate(
        {"schedule": "@hourly", "onDrift": {"threshold": 1.0, "for": "0s", "minInterval": "0s"}}
    )
    reading = DriftReading("v1-aaaaa", at(1, 0, 5), Value(3.0))
    i = Inputs(rebuild, None, None, "v1-aaaaa", at(0), None, reading, at(1, 0, 5))
    d = decide(i, lambda token: f"v-{token}")
    assert d.last is not None and d.last.reason == "Schedule"
    assert d.token == "schedule@2026-11-22T01:00:00Z" and d.last.version == f"v-{d.token}"
    assert d.drift is not None and d.drift.result == "Above", "the drift is still recorded"
    assert [e.reason for e in d.events] == ["DriftDetected", "ScheduledRebuild"]
