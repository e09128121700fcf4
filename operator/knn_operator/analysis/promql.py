"""Every PromQL the analysis runs (and the data-plane tests query) is rendered here.

Queries select one serving revision by the labels its server sets itself
(namespace, index, version), so they work whatever the scrape relabelling is
(Prometheus must keep them: `honor_labels: true`). Each returns one series or
none; "none" and NaN are no data, judged Inconclusive, never a pass.

Choices:
- Latency is p95 of live traffic in milliseconds (the unit of p95LatencyMs).
  Live means `source!="probe"`, so servers that predate the source label still
  count as live. Below `low_traffic_rps` live requests per second, a p95 of a
  handful of requests is noise: the revision is judged on its probe replay's
  latency instead (search time of one probe, no HTTP: a lower bound of what a
  client sees, by the HTTP and JSON cost, ~0.1-0.3 ms).
- The error rate counts 5xx only: a 4xx is a client's bad input, refused by a
  healthy server. No 5xx series at all means 0 errors; no requests at all means
  0/0 = NaN, no data (a revision without traffic cannot be judged on errors).
- Probe recall is the mean of the revision's pods' knn_recall_ratio gauges (all
  replay the same held-out probes); live recall sums counters across pods:
  found / expected over the window.
- Relative checks compare like with like: live p95 with live p95 when both
  revisions have traffic, else replay p95 with replay p95.
"""

from __future__ import annotations

from dataclasses import dataclass

from knn_contracts import metrics as names

QUANTILE = 0.95
_DURATION = names.QUERY_DURATION
_REQUESTS = names.REQUESTS + "_total"
_FOUND = names.LIVE_RECALL_FOUND + "_total"
_EXPECTED = names.LIVE_RECALL_EXPECTED + "_total"


def _quote(value: str) -> str:
    """A PromQL double-quoted string (Go escaping)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


@dataclass(frozen=True)
class Revision:
    """One serving revision, as its servers label their series."""

    namespace: str
    index: str  # the owner's name: a KnnIndex's, or a ClusterModel's
    version: str
    label: str = names.LABEL_INDEX  # the label naming it: `index`, or `model`

    def matchers(self, *extra: str) -> str:
        """`{namespace="…",index="…",version="…",<extra>}` (`model=` for a model)"""
        own = (
            f"{names.LABEL_NAMESPACE}={_quote(self.namespace)}",
            f"{self.label}={_quote(self.index)}",
            f"{names.LABEL_VERSION}={_quote(self.version)}",
        )
        return "{" + ",".join((*own, *extra)) + "}"


LIVE = f"{names.LABEL_SOURCE}!={_quote(names.SOURCE_PROBE)}"
PROBE = f"{names.LABEL_SOURCE}={_quote(names.SOURCE_PROBE)}"


def p95_seconds(rev: Revision, window: str, source: str = LIVE) -> str:
    """p95 query duration in seconds of one source (LIVE or PROBE)."""
    buckets = f"{_DURATION}_bucket{rev.matchers(source)}[{window}]"
    return f"histogram_quantile({QUANTILE}, sum by (le) (rate({buckets})))"


def request_rate(rev: Revision, window: str, source: str = LIVE) -> str:
    """Answered queries per second (the histogram counts answered queries only)."""
    return f"sum(rate({_DURATION}_count{rev.matchers(source)}[{window}]))"


def _enough_traffic(rev: Revision, window: str, low_traffic_rps: float) -> str:
    return f"on() ({request_rate(rev, window)} >= {low_traffic_rps:g})"


def latency_p95_ms(rev: Revision, window: str, probe_window: str, low_traffic_rps: float) -> str:
    """p95 in ms of live traffic; of the probe replay when live traffic is below the floor."""
    live = p95_seconds(rev, window)
    probe = p95_seconds(rev, probe_window, PROBE)
    enough = _enough_traffic(rev, window, low_traffic_rps)
    return f"1000 * (({live} and {enough}) or {probe})"


def latency_ratio(
    canary: Revision, stable: Revision, window: str, probe_window: str, low_traffic_rps: float
) -> str:
    """canary p95 / stable p95: live over live when both have traffic, else replay over replay."""
    live = f"{p95_seconds(canary, window)} / {p95_seconds(stable, window)}"
    probe = (
        f"{p95_seconds(canary, probe_window, PROBE)} / {p95_seconds(stable, probe_window, PROBE)}"
    )
    both = (
        f"{_enough_traffic(canary, window, low_traffic_rps)} "
        f"and {_enough_traffic(stable, window, low_traffic_rps)}"
    )
    return f"({live} and {both}) or ({probe})"


def error_rate(rev: Revision, window: str) -> str:
    """5xx responses / all responses; 4xx (bad input) are not server failures."""
    errors = (
        f"sum(rate({_REQUESTS}{rev.matchers(names.LABEL_CODE + '=~' + _quote('5..'))}[{window}]))"
    )
    total = f"sum(rate({_REQUESTS}{rev.matchers()}[{window}]))"
    return f"({errors} or on() vector(0)) / {total}"


def probe_recall(rev: Revision) -> str:
    """Recall@k of the held-out probe replay, mean over the revision's pods."""
    return f"avg({names.RECALL}{rev.matchers()})"


def live_recall(rev: Revision, window: str) -> str:
    """Recall of sampled live queries checked exactly: found / expected over the window."""
    found = f"sum(rate({_FOUND}{rev.matchers()}[{window}]))"
    expected = f"sum(rate({_EXPECTED}{rev.matchers()}[{window}]))"
    return f"{found} / {expected}"


def recall_drop(canary: Revision, stable: Revision) -> str:
    """stable probe recall - canary probe recall (positive when the canary is worse)."""
    return f"{probe_recall(stable)} - {probe_recall(canary)}"


def probe_inertia(rev: Revision) -> str:
    """A k-means revision's probe replay: mean squared distance of its probe points
    to their centroids, mean over the revision's pods (all replay the same probes)."""
    return f"avg({names.CLUSTER_PROBE_INERTIA}{rev.matchers()})"


def probe_silhouette(rev: Revision) -> str:
    """A k-means revision's probe points labelled by its own assignments: their
    silhouette, the worst of the revision's pods (all load the same probes)."""
    return f"min({names.CLUSTER_PROBE_SILHOUETTE}{rev.matchers()})"


def inertia_ratio(canary: Revision, stable: Revision) -> str:
    """canary probe inertia / stable probe inertia (above 1 when the canary fits worse).
    Each replays its own version's probes: both are drawn from the same source, so
    the ratio compares the models, not the probe sets, up to sampling noise."""
    return f"{probe_inertia(canary)} / {probe_inertia(stable)}"


def template(query: str, canary: Revision, stable: Revision | None) -> str:
    """A custom query with the rollout's names filled in, so one spec serves every
    revision: {{namespace}}, {{index}}, {{revision}}, {{stableRevision}}, and
    {{canary}}, the canary's label matchers without braces."""
    values = {
        "namespace": canary.namespace,
        "index": canary.index,
        "model": canary.index,
        "revision": canary.version,
        "stableRevision": stable.version if stable is not None else "",
        "canary": canary.matchers()[1:-1],
    }
    for key, value in values.items():
        query = query.replace("{{" + key + "}}", value)
    return query


def query_drift(rev: Revision) -> str:
    """The drift trigger's default, of the revision's worst pod (each pod's own window):
    for an index, live nearest-neighbour distance over the probe set's; for a model, the
    population stability index of its live cluster assignments against training."""
    if rev.label == names.LABEL_MODEL:
        return f"max({names.CLUSTER_DRIFT_PSI}{rev.matchers()})"
    return f"max({names.QUERY_DISTANCE_RATIO}{rev.matchers()})"
