"""Retraining triggers, shared by every kind: `spec.rebuild` (a cron schedule, a drift
threshold on a Prometheus gauge, a manual token) and what the operator records of
them in status (`lastRebuild`, `drift`, `nextScheduledRebuild`).

A kind reuses these models as they are, and triggers.decide to decide from them;
what differs is the default drift query (KnnIndex: the query-distance ratio,
analysis.promql.query_drift; a ClusterModel: its PSI gauge), which the kind's
prepare step supplies (kinds/knnindex_drift.py for KnnIndex)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from ..triggers.cron import CRON_PATTERN, CronError, parse_schedule
from .common import DURATION_PATTERN, Model, cel, validations
from .prometheus import PrometheusProvider

TriggerReason = Literal["Schedule", "Drift"]
DriftResult = Literal["Below", "Above", "NoData", "Error"]


class OnDrift(Model):
    """Rebuild when a drift gauge of the stable revision stays above a threshold."""

    threshold: float = Field(
        gt=0,
        le=1e9,
        description="Rebuild when the value is above this (KnnIndex default query: live "
        "nearest-neighbour distance / the probe set's, e.g. 1.5; ClusterModel: PSI, e.g. 0.25)",
    )
    for_: str = Field(
        default="10m",
        alias="for",
        pattern=DURATION_PATTERN,
        max_length=32,
        description="How long every measurement must stay above the threshold first "
        "(no data or a query error starts the wait again)",
    )
    min_interval: str = Field(
        default="1h",
        pattern=DURATION_PATTERN,
        max_length=32,
        description="Least time from the start of the current version's build to a drift "
        "rebuild (a spec change, a schedule or a drift rebuild all start that clock)",
    )
    interval: str = Field(
        default="1m",
        pattern=DURATION_PATTERN,
        max_length=32,
        description="Time between measurements",
    )
    query: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description="PromQL instead of the kind's drift gauge: {{namespace}}, {{name}}, "
        "{{index}} or {{model}}, and {{revision}} (the stable's) are replaced; must return "
        "one series or a scalar",
    )
    prometheus: PrometheusProvider | None = Field(
        default=None,
        description="Where to measure; default: rollout.analysis.prometheus",
    )


class Rebuild(Model):
    schedule: str | None = Field(
        default=None,
        max_length=128,
        description="Cron schedule, in UTC, of rebuilds of the same inputs: five fields "
        "(minute hour day-of-month month day-of-week), six with a leading seconds field, or "
        "@hourly, @daily, @weekly, @monthly, @yearly. Fires missed while the operator was "
        "down, or while a build or a rollout ran, make one rebuild, not one each",
    )
    on_drift: OnDrift | None = Field(
        default=None, description="Rebuild when the served data drifts (a Prometheus gauge)"
    )
    token: str | None = Field(
        default=None, max_length=253, description="Change to force a rebuild of the same inputs"
    )

    model_config = validations(
        cel(
            f"!has(self.schedule) || self.schedule.matches(r'{CRON_PATTERN}')",
            "rebuild.schedule must be a cron expression: minute hour day-of-month month "
            "day-of-week (e.g. '0 3 * * *'), an optional leading seconds field, or @hourly, "
            "@daily, @weekly, @monthly, @yearly; each value within its field's range",
            field_path=".schedule",
        ),
    )

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                parse_schedule(v)
            except CronError as e:
                raise ValueError(str(e)) from e
        return v


class LastRebuild(Model):
    """The latest rebuild a trigger started; its token is part of the version's identity."""

    reason: TriggerReason = Field(description="Schedule | Drift")
    at: str = Field(description="When the trigger started the rebuild (RFC 3339)")
    version: str = Field(description="The version it asked for")
    token: str = Field(description="Folded into the version's identity (a new version)")
    value: float | None = Field(default=None, description="Drift: the value measured")
    fire: str | None = Field(default=None, description="Schedule: the fire time it ran for")
    missed: int | None = Field(
        default=None, description="Schedule: fires since the version's build, caught up as one"
    )
    message: str = ""


class DriftStatus(Model):
    """The drift gauge of the stable revision as last measured."""

    revision: str = Field(description="The revision measured (the stable)")
    result: DriftResult = Field(description="Below | Above | NoData | Error")
    value: float | None = None
    at: str = Field(description="When it was measured")
    above_since: str | None = Field(
        default=None, description="Since when every measurement has been above the threshold"
    )
    message: str = Field(default="", max_length=1024)


# A rule of the spec that holds `rebuild` (both kinds): without a Prometheus address
# the drift query could never run.
ON_DRIFT_NEEDS_PROMETHEUS = cel(
    "!has(self.rebuild.onDrift) || has(self.rebuild.onDrift.prometheus)"
    " || has(self.rollout.analysis)",
    "rebuild.onDrift needs a Prometheus: set rebuild.onDrift.prometheus or rollout.analysis",
    field_path=".rebuild.onDrift",
)
