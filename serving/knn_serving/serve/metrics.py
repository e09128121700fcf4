"""The serving pod's Prometheus metrics (names from knn_contracts.metrics).

Identity labels (index, version, namespace) are set here, by the server,
so analysis queries do not depend on scrape relabelling. Children are bound
once so the hot path only increments and observes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from knn_contracts import metrics as names
from knn_contracts.artifact import Manifest
from knn_contracts.identity import version_of_revision
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as mp

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
IDENTITY = (names.LABEL_INDEX, names.LABEL_VERSION, names.LABEL_NAMESPACE)


@dataclass(frozen=True)
class Identity:
    index: str
    namespace: str
    version: str = ""
    # The operator's revision id (`<version>-<digest>`): the `version` label then
    # tells two revisions of one artifact apart (a canary at another efSearch).
    revision: str = ""

    def values(self) -> tuple[str, str, str]:
        return (self.index, self.version, self.namespace)


class ServingMetrics:
    def __init__(self, identity: Identity, registry: CollectorRegistry | None = None) -> None:
        self.identity = identity
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.duration = Histogram(
            names.QUERY_DURATION,
            "Time to answer a query: source=live, a client's request from body received to "
            "response ready; source=probe, one probe of the replay on the search thread.",
            (*IDENTITY, names.LABEL_SOURCE),
            buckets=names.QUERY_DURATION_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            names.REQUESTS,
            "Query requests by HTTP status code.",
            (*IDENTITY, names.LABEL_CODE),
            registry=r,
        )
        self.recall = Gauge(
            names.RECALL,
            "Recall@k of the index on its probe set, replayed periodically.",
            (*IDENTITY, names.LABEL_K),
            registry=r,
            multiprocess_mode="livemax",
        )
        self.vectors = Gauge(
            names.INDEX_VECTORS,
            "Vectors in the loaded index.",
            IDENTITY,
            registry=r,
            multiprocess_mode="livemax",
        )
        self.info = Gauge(
            names.INDEX_INFO,
            "Loaded index; value 1, facts as labels.",
            (*IDENTITY, "metric", "dimension", "m", "ef_construction", "ef_search", "kind"),
            registry=r,
            multiprocess_mode="livemax",
        )
        self.live_found = Counter(
            names.LIVE_RECALL_FOUND,
            "Of sampled live queries, true top-k results (exact search) that were served.",
            IDENTITY,
            registry=r,
        )
        self.live_expected = Counter(
            names.LIVE_RECALL_EXPECTED,
            "Of sampled live queries, results expected (k per checked query).",
            IDENTITY,
            registry=r,
        )
        self.live_samples = Counter(
            names.LIVE_RECALL_SAMPLES,
            "Sampled live queries checked by exact search.",
            IDENTITY,
            registry=r,
        )
        self.live_dropped = Counter(
            names.LIVE_RECALL_DROPPED,
            "Sampled live queries dropped unchecked because the check queue was full.",
            IDENTITY,
            registry=r,
        )
        # Until an index is loaded only refusals (503) are counted, under version "".
        self._v = identity.values()
        self._codes: dict[int, Counter] = {}

    def set_version(self, manifest: Manifest) -> None:
        """Label series with the revision when one was given, else the artifact version.
        Raises ValueError for a revision of another version (a misconfigured pod)."""
        i = self.identity
        if i.revision and version_of_revision(i.revision) != manifest.version:
            raise ValueError(
                f"--revision {i.revision} is not a revision of the artifact's version "
                f"{manifest.version}"
            )
        self.identity = Identity(i.index, i.namespace, i.revision or manifest.version, i.revision)
        v = self._v = self.identity.values()
        self._codes = {}
        self.observe = self.duration.labels(*v, names.SOURCE_LIVE).observe
        self.observe_probe = self.duration.labels(*v, names.SOURCE_PROBE).observe
        # Live-recall series exist from the start at 0, so rate() sees their first samples.
        for counter in (self.live_found, self.live_expected, self.live_samples, self.live_dropped):
            counter.labels(*v)
        self.vectors.labels(*v).set(manifest.count)
        p = manifest.parameters
        self.info.labels(
            *v,
            manifest.metric,
            str(manifest.dimension),
            str(p.m),
            str(p.ef_construction),
            str(p.ef_search),
            manifest.kind,
        ).set(1)

    def count(self, code: int) -> None:
        child = self._codes.get(code)
        if child is None:
            child = self._codes[code] = self.requests.labels(*self._v, str(code))
        child.inc()

    def record_live(self, found: int, expected: int, samples: int) -> None:
        v = self._v
        self.live_found.labels(*v).inc(found)
        self.live_expected.labels(*v).inc(expected)
        self.live_samples.labels(*v).inc(samples)

    def drop_live(self) -> None:
        self.live_dropped.labels(*self._v).inc()

    def set_recall(self, k: int, value: float) -> None:
        self.recall.labels(*self._v, str(k)).set(value)

    def exposition(self) -> bytes:
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)
