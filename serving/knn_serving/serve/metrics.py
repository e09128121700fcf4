"""The serving pod's Prometheus metrics (names from knn_contracts.metrics).

Identity labels (index, version, namespace) are set here, by the server,
so analysis queries do not depend on scrape relabelling. Children are bound
once so the hot path only increments and observes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from knn_contracts import metrics as names
from knn_contracts.artifact import Manifest
from knn_contracts.identity import version_of_revision
from knn_contracts.kmeans import KMeansManifest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as mp

from ..drift import DriftReading, histogram_buckets

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@dataclass(frozen=True)
class Identity:
    index: str  # the resource's name: a KnnIndex's, or a ClusterModel's
    namespace: str
    version: str = ""
    # The operator's revision id (`<version>-<digest>`): the `version` label then
    # tells two revisions of one artifact apart (a canary at another efSearch).
    revision: str = ""
    # The label naming it: `index`, or `model` for a k-means model.
    label: str = names.LABEL_INDEX

    @property
    def serves_model(self) -> bool:
        return self.label == names.LABEL_MODEL

    def values(self) -> tuple[str, str, str]:
        return (self.index, self.version, self.namespace)


class ServingMetrics:
    def __init__(self, identity: Identity, registry: CollectorRegistry | None = None) -> None:
        self.identity = identity
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        ident = self.identity_labels = (identity.label, names.LABEL_VERSION, names.LABEL_NAMESPACE)
        self.duration = Histogram(
            names.QUERY_DURATION,
            "Time to answer a query: source=live, a client's request from body received to "
            "response ready; source=probe, one probe of the replay on the search thread.",
            (*ident, names.LABEL_SOURCE),
            buckets=names.QUERY_DURATION_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            names.REQUESTS,
            "Query requests by HTTP status code.",
            (*ident, names.LABEL_CODE),
            registry=r,
        )
        self.recall = Gauge(
            names.RECALL,
            "Recall@k of the index on its probe set, replayed periodically.",
            (*ident, names.LABEL_K),
            registry=r,
            multiprocess_mode="livemax",
        )
        self.vectors = Gauge(
            names.INDEX_VECTORS,
            "Vectors in the loaded index.",
            ident,
            registry=r,
            multiprocess_mode="livemax",
        )
        self.info = Gauge(
            names.INDEX_INFO,
            "Loaded index; value 1, facts as labels.",
            (*ident, "metric", "dimension", "m", "ef_construction", "ef_search", "kind"),
            registry=r,
            multiprocess_mode="livemax",
        )
        self.live_found = Counter(
            names.LIVE_RECALL_FOUND,
            "Of sampled live queries, true top-k results (exact search) that were served.",
            ident,
            registry=r,
        )
        self.live_expected = Counter(
            names.LIVE_RECALL_EXPECTED,
            "Of sampled live queries, results expected (k per checked query).",
            ident,
            registry=r,
        )
        self.live_samples = Counter(
            names.LIVE_RECALL_SAMPLES,
            "Sampled live queries checked by exact search.",
            ident,
            registry=r,
        )
        self.live_dropped = Counter(
            names.LIVE_RECALL_DROPPED,
            "Sampled live queries dropped unchecked because the check queue was full.",
            ident,
            registry=r,
        )
        # Until an index is loaded only refusals (503) are counted, under version "".
        self._v = identity.values()
        self._codes: dict[int, Counter] = {}

    def set_version(self, manifest: Manifest) -> None:
        """Label series with the revision when one was given, else the artifact version.
        Raises ValueError for a revision of another version (a misconfigured pod)."""
        self._set_identity(manifest.version)
        v = self._v
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

    def _set_identity(self, version: str) -> None:
        i = self.identity
        if i.revision and version_of_revision(i.revision) != version:
            raise ValueError(
                f"--revision {i.revision} is not a revision of the artifact's version {version}"
            )
        self.identity = Identity(i.index, i.namespace, i.revision or version, i.revision, i.label)
        self._v = self.identity.values()
        self._codes = {}

    def set_model(self, manifest: KMeansManifest) -> ClusterMetrics:
        """Label series for a k-means model and create its cluster metrics (the
        distance histogram's buckets come from the model's training distances)."""
        self._set_identity(manifest.version)
        v = self._v
        self.observe = self.duration.labels(*v, names.SOURCE_LIVE).observe
        self.observe_probe = self.duration.labels(*v, names.SOURCE_PROBE).observe
        self.info.labels(
            *v, manifest.metric, str(manifest.dimension), "", "", "", manifest.kind
        ).set(1)
        return ClusterMetrics(self.registry, self.identity_labels, v, manifest)

    def set_query_baseline(self, probe_nn: npt.NDArray[np.floating]) -> None:
        """Create the live nearest-distance histogram, its buckets fitted to the
        probe set's nearest distances, and export their mean. Once per process."""
        ident = self.identity_labels
        self.nn_distance = Histogram(
            names.QUERY_NN_DISTANCE,
            "Served distance to the nearest neighbour of each live query (hnswlib's "
            "distance: squared L2, 1 - cosine, 1 - inner product); buckets from the probes'.",
            ident,
            buckets=histogram_buckets(probe_nn),
            registry=self.registry,
        )
        self.nn_ratio = Gauge(
            names.QUERY_DISTANCE_RATIO,
            "Mean nearest distance of the last --drift-window live queries / the probe "
            "set's (worst worker).",
            ident,
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        Gauge(
            names.QUERY_PROBE_NN_DISTANCE,
            "Mean served nearest-neighbour distance of the probe set.",
            ident,
            registry=self.registry,
            multiprocess_mode="livemax",
        ).labels(*self._v).set(float(np.mean(probe_nn)))
        self.observe_nn = self.nn_distance.labels(*self._v).observe

    def set_query_ratio(self, ratio: float) -> None:
        self.nn_ratio.labels(*self._v).set(ratio)

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


class ClusterMetrics:
    """A k-means model's series: assignments per cluster, the distance histogram,
    the drift window's PSI and distance ratio, and the probe inertia."""

    def __init__(
        self,
        registry: CollectorRegistry,
        labels: tuple[str, ...],
        values: tuple[str, ...],
        manifest: KMeansManifest,
    ) -> None:
        r = registry
        self.assignments = Counter(
            names.CLUSTER_ASSIGNMENTS,
            "Vectors assigned to each cluster by /v1/assign.",
            (*labels, names.LABEL_CLUSTER),
            registry=r,
        )
        self.distance = Histogram(
            names.CLUSTER_DISTANCE,
            "Euclidean distance of each assigned vector to its centroid; buckets from the "
            "training distances (quantiles and multiples of the p99).",
            labels,
            buckets=manifest.distances.buckets,
            registry=r,
        )
        self.psi = Gauge(
            names.CLUSTER_DRIFT_PSI,
            "Population stability index of the cluster distribution of the last "
            "--drift-window assignments against training (worst worker).",
            labels,
            registry=r,
            multiprocess_mode="livemax",
        )
        self.window = Gauge(
            names.CLUSTER_DRIFT_WINDOW,
            "Assignments in the drift window.",
            labels,
            registry=r,
            multiprocess_mode="livemax",
        )
        self.ratio = Gauge(
            names.CLUSTER_DISTANCE_RATIO,
            "Mean distance-to-centroid over the drift window / the training mean (worst worker).",
            labels,
            registry=r,
            multiprocess_mode="livemax",
        )
        self.probe_inertia = Gauge(
            names.CLUSTER_PROBE_INERTIA,
            "Mean squared distance of the artifact's probe points to their centroids, as served.",
            labels,
            registry=r,
            multiprocess_mode="livemax",
        )
        self.probe_silhouette = Gauge(
            names.CLUSTER_PROBE_SILHOUETTE,
            "Silhouette of the artifact's probe points labelled by their served assignments.",
            labels,
            registry=r,
            multiprocess_mode="livemin",
        )
        self.centroids = Gauge(
            names.CLUSTER_CENTROIDS,
            "Clusters of the loaded model.",
            labels,
            registry=r,
            multiprocess_mode="livemax",
        )
        k = manifest.parameters.clusters
        # Every cluster's counter exists from the start at 0: rate() and a PSI
        # computed in PromQL see a cluster that never gets assigned anything.
        self._per_cluster = [self.assignments.labels(*values, str(c)) for c in range(k)]
        self.observe_distance = self.distance.labels(*values).observe
        # PSI, ratio and probe inertia are bound on their first value: a child
        # exists (and is exported) as 0 from the moment it is created.
        self._values = values
        self._window = self.window.labels(*values)
        self.centroids.labels(*values).set(k)
        self._window.set(0)

    def record(self, counts: Sequence[int], distances: Sequence[float]) -> None:
        """One request's assignments: `counts` per cluster and every distance."""
        for child, n in zip(self._per_cluster, counts, strict=True):
            if n:
                child.inc(n)
        for d in distances:
            self.observe_distance(d)

    def set_drift(self, reading: DriftReading) -> None:
        # A value not yet known is left absent (never 0: that would read as "no drift").
        self._window.set(reading.assignments)
        if reading.psi is not None:
            self.psi.labels(*self._values).set(reading.psi)
        if reading.distance_ratio is not None:
            self.ratio.labels(*self._values).set(reading.distance_ratio)

    def set_probe_inertia(self, value: float) -> None:
        self.probe_inertia.labels(*self._values).set(value)

    def set_probe_silhouette(self, value: float) -> None:
        self.probe_silhouette.labels(*self._values).set(value)
