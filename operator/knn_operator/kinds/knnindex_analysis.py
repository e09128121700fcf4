"""The I/O a plan of either kind (KnnIndex, ClusterModel) needs first: when the
rollout's next analysis is due, read the Prometheus credentials, measure every
check once and fold the run into the observation (status.analysis and the
machine's verdict). Everything it decides is done by the pure analysis
package; this module only fetches."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import replace

from knn_contracts import api
from knn_contracts import metrics as series
from knn_contracts import rollout as names

from .. import metrics
from ..analysis import (
    Assessment,
    CheckResult,
    CredentialsError,
    Limits,
    Prometheus,
    QueryError,
    Revision,
    assess,
    checks_for,
    judge,
    measure,
    record,
    tally_of,
)
from ..analysis.secrets import credentials_for
from ..events import Event
from ..kube import Kube
from ..models.knnindex import Analysis
from ..planning import Observed
from ..rollout.machine import AnalysisVerdict, analysis_due

log = logging.getLogger("knn_operator")
# The label a serving pod names its owner with on every series.
_SERIES_LABEL = {api.KNN_INDEX_KIND: series.LABEL_INDEX, api.CLUSTER_MODEL_KIND: series.LABEL_MODEL}


def verdict_of(a: Assessment) -> AnalysisVerdict:
    """The machine's view: Pass counts toward promotion, Wait holds nothing."""
    if a.decision == "Abort":
        return AnalysisVerdict("Abort", a.message, counted=False, cause=a.reason)
    if a.decision == "Pause":
        return AnalysisVerdict("Pause", a.message, counted=False, cause=a.reason)
    return AnalysisVerdict("Continue", a.message, counted=a.decision == "Pass")


async def _run(kube: Kube, obs: Observed, analysis: Analysis) -> list[CheckResult]:
    st, ns, name = obs.status, obs.owner.namespace, obs.owner.name
    assert st.canary_revision is not None
    label = _SERIES_LABEL[obs.owner.kind]
    canary = Revision(ns, name, st.canary_revision, label)
    stable = Revision(ns, name, st.stable_revision, label) if st.stable_revision else None
    record_of = {r.revision: r for r in st.revisions}.get(st.canary_revision)
    interval = (
        record_of.probe_interval_seconds if record_of else obs.spec.serving.probe_interval_seconds
    )
    checks = checks_for(analysis, canary, stable, interval)
    try:
        credentials = await credentials_for(kube, ns, analysis.prometheus)
    except CredentialsError as e:
        # Not the canary's fault: an Error run (consecutiveErrorLimit decides), never a pass.
        return [judge(c, QueryError(f"Prometheus credentials: {e}")) for c in checks]
    async with Prometheus.of(analysis.prometheus, credentials) as prometheus:
        return await measure(prometheus, checks)


async def prepare(kube: Kube, obs: Observed, now: dt.datetime) -> tuple[Observed, list[Event]]:
    """Measure when a run is due; the observation then carries its verdict."""
    analysis = obs.spec.rollout.analysis
    st = obs.status
    if analysis is None or st.canary_revision is None or not analysis_due(st.rollout, now):
        return obs, []
    results = await _run(kube, obs, analysis)
    new_status = record(st.analysis, st.canary_revision, results, now)
    assessment = assess(tally_of(new_status, st.canary_revision), Limits.of(analysis))
    events = []
    for r in results:
        metrics.ANALYSIS_MEASUREMENTS.labels(obs.owner.kind, r.check, r.result).inc()
        if r.result == "Failed":
            events.append(Event("Warning", names.EVENT_MEASUREMENT_FAILED, r.message))
    log.info(
        "%s/%s: analysis of %s: %s (%s)",
        obs.owner.namespace,
        obs.owner.name,
        st.canary_revision,
        assessment.decision,
        assessment.message,
    )
    return replace(obs, analysis=verdict_of(assessment), analysis_status=new_status), events
