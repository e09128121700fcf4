"""Prometheus metric and label names exported by serving pods (base units)."""

from typing import Final

QUERY_DURATION: Final = "knn_query_duration_seconds"
REQUESTS: Final = "knn_requests"  # exported as knn_requests_total (counter)
RECALL: Final = "knn_recall_ratio"
INDEX_VECTORS: Final = "knn_index_vectors"
# Live recall: sampled real queries checked by exact search in the background.
# Counters (exported with _total), so recall over any window and any set of pods
# is sum(rate(found)) / sum(rate(expected)).
LIVE_RECALL_FOUND: Final = "knn_live_recall_found"  # true top-k results that were served
LIVE_RECALL_EXPECTED: Final = "knn_live_recall_expected"  # k per checked query
LIVE_RECALL_SAMPLES: Final = "knn_live_recall_samples"  # queries checked
LIVE_RECALL_DROPPED: Final = "knn_live_recall_dropped"  # sampled, not checked (queue full)
INDEX_INFO: Final = "knn_index_info"
# Query drift of an index: the served nearest-neighbour distance (hnswlib's: squared
# L2, 1 - cosine, 1 - inner product) of live queries (histogram; buckets from the
# probe set's), the probe set's mean, and the live mean over the last --drift-window
# queries divided by it. Incoming queries that move away from the indexed data
# raise the ratio while recall can stay perfect.
QUERY_NN_DISTANCE: Final = "knn_query_nn_distance"
QUERY_PROBE_NN_DISTANCE: Final = "knn_query_probe_nn_distance_mean"
QUERY_DISTANCE_RATIO: Final = "knn_query_distance_ratio"
# k-means models (`knn-serve` of a kind kmeans artifact, labelled `model`).
CLUSTER_ASSIGNMENTS: Final = "knn_cluster_assignments"  # knn_cluster_assignments_total{cluster}
# Euclidean distance of each assigned vector to its centroid (histogram; buckets
# from the training distribution recorded in the manifest).
CLUSTER_DISTANCE: Final = "knn_cluster_distance"
# PSI of the assignment distribution of the last --drift-window assignments
# against the training cluster sizes (knn_serving.drift.psi).
CLUSTER_DRIFT_PSI: Final = "knn_cluster_drift_psi"
# Assignments the drift window holds (PSI is exported once it holds enough).
CLUSTER_DRIFT_WINDOW: Final = "knn_cluster_drift_window_assignments"
# Mean distance-to-centroid over the drift window / the training mean.
CLUSTER_DISTANCE_RATIO: Final = "knn_cluster_distance_ratio"
# Mean squared distance of the probe points to their centroids, as served.
CLUSTER_PROBE_INERTIA: Final = "knn_cluster_probe_inertia_mean"
# Silhouette of the probe points labelled by their served assignments.
CLUSTER_PROBE_SILHOUETTE: Final = "knn_cluster_probe_silhouette"
CLUSTER_CENTROIDS: Final = "knn_cluster_centroids"  # clusters of the loaded model

# Identity labels every series carries, set by the server itself so analysis
# queries work whatever the scrape relabelling does.
LABEL_INDEX: Final = "index"
LABEL_MODEL: Final = "model"
LABEL_VERSION: Final = "version"
LABEL_NAMESPACE: Final = "namespace"
LABEL_CODE: Final = "code"
LABEL_K: Final = "k"
LABEL_CLUSTER: Final = "cluster"  # a cluster id, "0" .. "k-1"
# Who asked: the query-duration histogram is split by source, so the p95 of live
# traffic excludes the probe replay, and a revision with too little live traffic
# can still be judged on its replay's latency (search time only, no HTTP).
LABEL_SOURCE: Final = "source"
SOURCE_LIVE: Final = "live"  # a client's query over HTTP
SOURCE_PROBE: Final = "probe"  # one probe of the held-out replay, timed on the search thread

# Latency buckets in seconds: dense below 50 ms where p95 thresholds live.
QUERY_DURATION_BUCKETS: Final = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
