"""The I/O the drift trigger needs first (spec.rebuild.onDrift): when a measurement
of the stable revision is due, run the drift query once and hand the sample to the
planner, which decides (planning.rebuilds). A failure is a sample too (an Error
measurement), never an exception: the rest of the pass goes on."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import replace

from knn_contracts import api
from knn_contracts import metrics as names

from ..analysis import CredentialsError, Prometheus, QueryError, Revision, Sample
from ..analysis.credentials import FIELD
from ..analysis.promql import query_drift
from ..analysis.secrets import credentials_for
from ..events import Event
from ..kube import Kube
from ..models.prometheus import PrometheusProvider
from ..planning import Observed
from ..planning.rebuilds import drift_due
from ..triggers.drift import DriftReading, render

log = logging.getLogger("knn_operator")


def drift_query(obs: Observed, revision: str) -> str:
    on = obs.spec.rebuild.on_drift
    assert on is not None
    ns, name = obs.owner.namespace, obs.owner.name
    if on.query is None:
        model = obs.owner.kind == api.CLUSTER_MODEL_KIND
        label = names.LABEL_MODEL if model else names.LABEL_INDEX
        return query_drift(Revision(ns, name, revision, label))
    values = {"namespace": ns, "name": name, "index": name, "model": name, "revision": revision}
    return render(on.query, values)


async def _sample(
    kube: Kube, namespace: str, provider: PrometheusProvider, field: str, query: str
) -> Sample:
    try:
        credentials = await credentials_for(kube, namespace, provider, field)
    except CredentialsError as e:
        return QueryError(f"Prometheus credentials: {e}")
    async with Prometheus.of(provider, credentials) as prometheus:
        return await prometheus.query(query)


async def prepare(kube: Kube, obs: Observed, now: dt.datetime) -> tuple[Observed, list[Event]]:
    revision = drift_due(obs, now)
    on = obs.spec.rebuild.on_drift
    if revision is None or on is None:
        return obs, []
    analysis = obs.spec.rollout.analysis
    provider = on.prometheus or (analysis.prometheus if analysis else None)
    field = "spec.rebuild.onDrift.prometheus" if on.prometheus else None
    if provider is None:  # the CRD refuses this; a spec from before the rule may have it
        sample: Sample = QueryError("no Prometheus: set rebuild.onDrift.prometheus")
    else:
        query = drift_query(obs, revision)
        ns = obs.owner.namespace
        sample = await _sample(kube, ns, provider, field or FIELD, query)
    log.info("%s/%s: drift of %s: %s", obs.owner.namespace, obs.owner.name, revision, sample)
    return replace(obs, drift=DriftReading(revision, now, sample)), []
