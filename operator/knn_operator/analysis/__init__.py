"""Rollout analysis: checks rendered to PromQL, measured through a metric provider,
judged and tallied by pure functions, recorded in status.

    checks = checks_for(spec.rollout.analysis, canary, stable, probe_interval_seconds)
    async with Prometheus(address, timeout=..., credentials=resolve(provider, secrets)) as p:
        results = await measure(p, checks)
    status.analysis = record(status.analysis, canary.version, results, now)
    decision = assess(tally_of(status.analysis, canary.version), Limits.of(analysis))

Everything but prometheus.py and measure.py is pure.
"""

from .assess import (
    SEVERITY,
    Assessment,
    CheckResult,
    Decision,
    Limits,
    Tally,
    assess,
    is_worse,
    judge,
    tally,
    worst,
)
from .checks import Check, Windows, checks_for, windows
from .credentials import Credentials, CredentialsError, resolve, secrets_needed
from .measure import measure
from .prometheus import Prometheus
from .promql import Revision
from .provider import MetricProvider, NoData, QueryError, Sample, Value
from .status import record, tally_of

__all__ = [
    "SEVERITY",
    "Assessment",
    "Check",
    "CheckResult",
    "Credentials",
    "CredentialsError",
    "Decision",
    "Limits",
    "MetricProvider",
    "NoData",
    "Prometheus",
    "QueryError",
    "Revision",
    "Sample",
    "Tally",
    "Value",
    "Windows",
    "assess",
    "checks_for",
    "is_worse",
    "judge",
    "measure",
    "record",
    "resolve",
    "secrets_needed",
    "tally",
    "tally_of",
    "windows",
    "worst",
]
