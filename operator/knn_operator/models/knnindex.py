"""The KnnIndex custom resource (DESIGN section 2). Field names are the contract.

CEL rules ride along in `json_schema_extra` and land in the generated CRD
as `x-kubernetes-validations`, so the API server refuses cross-field
mistakes with a message naming the field.
"""

from __future__ import annotations

from typing import Literal

from knn_contracts.rollout import BUILTIN_CHECKS, MeasurementResult
from pydantic import Field

from .common import (
    DNS_LABEL_PATTERN,
    DURATION_PATTERN,
    SOURCE_URI_PATTERN,
    STORAGE_URI_PATTERN,
    Condition,
    DisruptionBudget,
    Model,
    PodOverrides,
    Resources,
    cel,
    validations,
)

# Re-exported: these lived here before the drift trigger shared them.
from .prometheus import PrometheusAuth as PrometheusAuth
from .prometheus import PrometheusProvider as PrometheusProvider
from .prometheus import SecretKey as SecretKey
from .rebuild import ON_DRIFT_NEEDS_PROMETHEUS, DriftStatus, LastRebuild, Rebuild

Metric = Literal["l2", "ip", "cosine"]
SourceFormat = Literal["npy", "fvecs", "bvecs", "parquet"]
Phase = Literal["Pending", "Building", "Progressing", "Serving", "Degraded", "RolledBack", "Failed"]

MAX_STEPS = 20
MAX_METRICS = 10
MAX_MEASUREMENTS = 50
_BUILTIN_CHECKS_CEL = "[" + ", ".join(f"'{c}'" for c in BUILTIN_CHECKS) + "]"


class Source(Model):
    uri: str = Field(
        pattern=SOURCE_URI_PATTERN,
        max_length=2048,
        description="Where the vectors are: file://, pvc://CLAIM/path, http(s):// or s3://",
    )
    format: SourceFormat | None = Field(
        default=None, description="npy | fvecs | bvecs | parquet; default: from the extension"
    )
    dimension: int = Field(ge=1, le=65536, description="Vector dimension; the build checks it")
    ids: str | None = Field(
        default=None,
        pattern=SOURCE_URI_PATTERN,
        max_length=2048,
        description="Optional ids file (.npy, .json or one id per line)",
    )
    column: str | None = Field(
        default=None, min_length=1, max_length=253, description="parquet vector column"
    )
    id_column: str | None = Field(
        default=None, min_length=1, max_length=253, description="parquet id column"
    )
    secret_name: str | None = Field(
        default=None,
        pattern=DNS_LABEL_PATTERN,
        max_length=63,
        description="Secret with credentials for s3:// or http(s):// (environment variables)",
    )


class Hnsw(Model):
    m: int = Field(default=16, ge=2, le=128, description="Graph degree (M)")
    ef_construction: int = Field(
        default=200, ge=1, le=4096, description="Build-time search breadth (graph quality)"
    )
    ef_search: int = Field(
        default=64, ge=1, le=4096, description="Search breadth; changes serving, not the artifact"
    )


class Validation(Model):
    probe_queries: int = Field(
        default=500,
        ge=1,
        le=100000,
        description="Probe queries: rows held out of the graph (served exactly beside it), "
        "or the first rows of probeSource",
    )
    probe_source: str | None = Field(
        default=None,
        pattern=SOURCE_URI_PATTERN,
        max_length=2048,
        description="Real queries to validate with instead of held-out rows "
        "(same schemes and formats as source.uri)",
    )
    k: int = Field(default=10, ge=1, le=1000, description="Recall is measured at k")
    min_recall: float = Field(
        default=0.95,
        ge=0.0,
        le=1.0,
        description="Gate before any traffic: the build fails if no efSearch reaches it, "
        "and a serving efSearch whose recorded recall is below it is refused",
    )


class JobSettings(Model):
    """The builder Job's settings every kind shares (KnnIndex and ClusterModel)."""

    resources: Resources | None = Field(
        default=None, description="Requests and limits of the builder pod"
    )
    timeout_seconds: int = Field(
        default=3600, ge=60, le=7 * 24 * 3600, description="The builder Job's deadline"
    )
    backoff_limit: int = Field(
        default=2, ge=0, le=10, description="Builder pod retries before the build fails"
    )
    threads: int | None = Field(
        default=None, ge=1, le=1024, description="Build threads; default: the pod's CPUs"
    )
    image: str | None = Field(
        default=None, max_length=512, description="Builder image; default: the operator's"
    )
    pod: PodOverrides | None = Field(
        default=None, description="Scheduling, pull secrets, labels of the builder pods"
    )


class Build(JobSettings):
    validation: Validation = Field(
        default_factory=Validation, description="The recall gate before any traffic"
    )


class Storage(Model):
    uri: str = Field(
        pattern=STORAGE_URI_PATTERN,
        max_length=2048,
        description="Where versions live: s3://bucket/prefix, pvc://CLAIM/prefix or file://",
    )
    secret_name: str | None = Field(
        default=None,
        pattern=DNS_LABEL_PATTERN,
        max_length=63,
        description="Secret with credentials for s3:// storage (environment variables)",
    )


class Autoscaling(Model):
    """A HorizontalPodAutoscaler for the stable revision, made and retargeted by the
    operator at each promotion; the operator then leaves the stable's replica count to
    it and sizes a canary in proportion to what the autoscaler chose."""

    min_replicas: int = Field(default=1, ge=1, le=1000, description="Fewest stable replicas")
    max_replicas: int = Field(ge=1, le=1000, description="Most stable replicas")
    target_cpu_utilization_percentage: int = Field(
        default=80, ge=1, le=1000, description="Average CPU use (of requests) to aim for"
    )

    model_config = validations(
        cel(
            "self.minReplicas <= self.maxReplicas",
            "autoscaling.minReplicas must not exceed maxReplicas",
        )
    )


class Serving(Model):
    replicas: int = Field(
        default=2, ge=0, le=1000, description="Stable replicas (the start when autoscaling)"
    )
    image: str | None = Field(
        default=None, max_length=512, description="Serving image; default: the operator's"
    )
    resources: Resources | None = Field(
        default=None, description="Requests and limits of each serving pod"
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Server processes per pod (they share one copy of the index)",
    )
    probe_interval_seconds: int = Field(
        default=60, ge=1, le=86400, description="Seconds between replays of the probe set"
    )
    autoscaling: Autoscaling | None = Field(
        default=None, description="Scale the stable revision with a HorizontalPodAutoscaler"
    )
    pod: PodOverrides | None = Field(
        default=None,
        description="Scheduling, pull secrets, labels of the serving pods; a change makes "
        "a new revision, rolled out like any other",
    )
    disruption_budget: DisruptionBudget | None = Field(
        default=None, description="A PodDisruptionBudget for each serving revision"
    )


class GatewayApiRouter(Model):
    http_route: str = Field(
        pattern=DNS_LABEL_PATTERN, max_length=253, description="HTTPRoute whose weights shift"
    )


class IstioRouter(Model):
    virtual_service: str = Field(
        pattern=DNS_LABEL_PATTERN, max_length=253, description="VirtualService whose weights shift"
    )
    destination_rule: str | None = Field(
        default=None,
        pattern=DNS_LABEL_PATTERN,
        max_length=253,
        description="DestinationRule with the stable and canary subsets",
    )


class ReplicasRouter(Model):
    pass


class TrafficRouter(Model):
    gateway_api: GatewayApiRouter | None = Field(
        default=None,
        alias="gatewayAPI",
        description="Weights of the backendRefs to Services <index>-stable and <index>-canary "
        "in an HTTPRoute",
    )
    istio: IstioRouter | None = Field(
        default=None,
        description="Weights of an Istio VirtualService's destinations: hosts <index>-stable "
        "and <index>-canary, or subsets stable and canary of a DestinationRule",
    )
    replicas: ReplicasRouter | None = Field(
        default=None,
        description="One Service over all revisions; the canary's share is its share of pods",
    )

    model_config = validations(
        cel(
            "(has(self.gatewayAPI) ? 1 : 0) + (has(self.istio) ? 1 : 0)"
            " + (has(self.replicas) ? 1 : 0) == 1",
            "choose exactly one traffic router: gatewayAPI, istio or replicas",
        )
    )


class Pause(Model):
    duration: str | None = Field(
        default=None,
        pattern=DURATION_PATTERN,
        max_length=32,
        description="How long to wait; omitted means until the knn.dev/promote annotation",
    )


class Step(Model):
    set_weight: int | None = Field(
        default=None, ge=0, le=100, description="The canary's share of traffic, in percent"
    )
    pause: Pause | None = Field(default=None, description="Wait: a duration, or until promoted")

    model_config = validations(
        cel(
            "has(self.setWeight) != has(self.pause)",
            "each step is exactly one of setWeight or pause",
        )
    )


class Thresholds(Model):
    """Built-in checks of the canary revision; each one left out is not checked."""

    p95_latency_ms: float | None = Field(
        default=None,
        gt=0,
        le=600000,
        description="Most p95 query latency allowed, in ms, of live traffic over the window; "
        "below lowTrafficRps live queries per second, of the probe replay's searches",
    )
    max_error_rate: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Most share of 5xx among query responses (4xx, bad input, do not count); "
        "without traffic in the window the check is inconclusive",
    )
    min_recall: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Least recall@k of the held-out probe replay (knn_recall_ratio), "
        "measurable without traffic",
    )
    min_live_recall: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Least recall@k of sampled live queries checked exactly "
        "(knn_live_recall_*); inconclusive without sampled traffic",
    )
    max_latency_ratio: float | None = Field(
        default=None,
        gt=0,
        le=1000,
        description="Most canary p95 / stable p95 (e.g. 1.2): live over live when both "
        "revisions have traffic, else probe replay over probe replay",
    )
    max_recall_drop: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Most stable probe recall minus canary probe recall (e.g. 0.01)",
    )
    max_probe_inertia: float | None = Field(
        default=None,
        ge=0.0,
        description="ClusterModel only: most mean squared distance of the canary's probe "
        "points to their centroids, as its servers measure it when they load the model "
        "(knn_cluster_probe_inertia_mean); measurable without traffic",
    )
    max_inertia_ratio: float | None = Field(
        default=None,
        gt=0,
        le=1000,
        description="ClusterModel only: most canary probe inertia / stable probe inertia "
        "(e.g. 1.1: at most 10% worse)",
    )
    min_probe_silhouette: float | None = Field(
        default=None,
        ge=-1.0,
        le=1.0,
        description="ClusterModel only: least silhouette of the canary's probe points "
        "labelled by its own assignments, as its servers measure it when they load the "
        "model (knn_cluster_probe_silhouette); measurable without traffic",
    )


_MODEL_ONLY_THRESHOLDS = ("maxProbeInertia", "maxInertiaRatio", "minProbeSilhouette")


class CustomMetric(Model):
    name: str = Field(
        pattern=DNS_LABEL_PATTERN,
        max_length=63,
        description="Check name in status and Events; not one of the built-in check names",
    )
    query: str = Field(
        min_length=1,
        max_length=4096,
        description="PromQL; {{namespace}}, {{index}}, {{revision}} (the canary's) and "
        "{{stableRevision}} are replaced before it runs, {{canary}} by the canary's label "
        "matchers; must return one series or a scalar (aggregate it, e.g. sum(...)); no "
        "series or NaN is inconclusive",
    )
    min: float | None = Field(default=None, description="Least value allowed (inclusive)")
    max: float | None = Field(default=None, description="Most value allowed (inclusive)")

    model_config = validations(
        cel("has(self.min) || has(self.max)", "a custom metric needs min or max"),
        cel(
            "!has(self.min) || !has(self.max) || self.min <= self.max",
            "min must not exceed max",
        ),
        cel(
            "!(self.name in " + _BUILTIN_CHECKS_CEL + ")",
            "a custom metric may not take a built-in check name ("
            + ", ".join(BUILTIN_CHECKS)
            + ")",
            field_path=".name",
        ),
    )


_THRESHOLD_FIELDS = tuple(
    f.alias or name for name, f in Thresholds.model_fields.items()
)  # camelCase names, for CEL


class Analysis(Model):
    prometheus: PrometheusProvider = Field(description="Where the serving pods' metrics are")
    interval: str = Field(
        default="30s",
        pattern=DURATION_PATTERN,
        max_length=32,
        description="Time between analysis runs; each run evaluates every check once",
    )
    scrape_interval: str = Field(
        default="30s",
        pattern=DURATION_PATTERN,
        max_length=32,
        description="How often Prometheus scrapes the serving pods; rate() windows are "
        "max(interval, 4 x scrapeInterval)",
    )
    failure_limit: int = Field(
        default=1,
        ge=0,
        le=100,
        description="Failed runs tolerated; one more aborts (0: abort on the first failure)",
    )
    inconclusive_limit: int = Field(
        default=3,
        ge=0,
        le=100,
        description="Inconclusive runs (no data) tolerated; one more triggers onInconclusive",
    )
    on_inconclusive: Literal["Pause", "Abort"] = Field(
        default="Abort",
        description="Beyond inconclusiveLimit or consecutiveErrorLimit: Pause (wait for "
        "knn.dev/promote or knn.dev/abort) or Abort (roll back)",
    )
    consecutive_error_limit: int = Field(
        default=4,
        ge=0,
        le=100,
        description="Runs in a row with Prometheus errors tolerated; one more triggers "
        "onInconclusive (an error is never a pass)",
    )
    low_traffic_rps: float = Field(
        default=1.0,
        ge=0,
        le=1e6,
        description="Below this many live queries per second, latency is judged on the "
        "probe replay's searches",
    )
    thresholds: Thresholds = Field(
        default_factory=Thresholds, description="Built-in checks of the canary"
    )
    metrics: list[CustomMetric] = Field(
        default_factory=list, max_length=MAX_METRICS, description="Custom PromQL checks"
    )

    model_config = validations(
        cel(
            "size(self.metrics) > 0 || "
            + " || ".join(f"has(self.thresholds.{t})" for t in _THRESHOLD_FIELDS),
            "analysis needs at least one threshold or custom metric",
        ),
        cel(
            "self.metrics.all(m, self.metrics.exists_one(n, n.name == m.name))",
            "custom metric names must be unique",
            field_path=".metrics",
        ),
        cel(
            "duration(self.prometheus.timeout) < duration(self.interval)",
            "prometheus.timeout must be shorter than interval",
            field_path=".prometheus.timeout",
        ),
    )


class Rollout(Model):
    traffic_router: TrafficRouter = Field(
        default_factory=lambda: TrafficRouter(replicas=ReplicasRouter()),
        description="What moves traffic between the stable and the canary",
    )
    steps: list[Step] = Field(
        default_factory=list,
        max_length=MAX_STEPS,
        description="setWeight and pause steps; none: promoted as soon as available",
    )
    analysis: Analysis | None = Field(
        default=None, description="Judge the canary in Prometheus while it takes traffic"
    )
    scale_down_delay_seconds: int = Field(
        default=300,
        ge=0,
        le=86400,
        description="How long a replaced stable stays warm (routers that can keep it idle)",
    )

    model_config = validations(
        cel(
            "self.steps.filter(s, has(s.setWeight)).map(s, s.setWeight).isSorted()",
            "setWeight values must rise from step to step",
            reason="FieldValueInvalid",
            field_path=".steps",
        ),
    )


class History(Model):
    limit: int = Field(default=3, ge=1, le=20, description="Versions kept, serving ones included")


class KnnIndexSpec(Model):
    source: Source = Field(description="The vectors to index")
    metric: Metric = Field(default="cosine", description="Distance: l2, ip or cosine")
    hnsw: Hnsw = Field(default_factory=Hnsw, description="HNSW graph and search parameters")
    build: Build = Field(default_factory=Build, description="The builder Job and its recall gate")
    storage: Storage = Field(description="Where built versions (artifacts) are kept")
    serving: Serving = Field(default_factory=Serving, description="The serving Deployments")
    rollout: Rollout = Field(
        default_factory=Rollout, description="How a new revision earns its traffic"
    )
    history: History = Field(default_factory=History, description="Versions kept")
    rebuild: Rebuild = Field(
        default_factory=Rebuild,
        description="Rebuilding the same inputs: on a schedule, on drift, or by a token",
    )

    model_config = validations(
        cel(
            "self.hnsw.efSearch >= self.build.validation.k",
            "hnsw.efSearch must be at least build.validation.k",
            reason="FieldValueInvalid",
            field_path=".hnsw.efSearch",
        ),
        cel(
            "!has(self.source.column) && !has(self.source.idColumn) || "
            "(has(self.source.format) && self.source.format == 'parquet') || "
            "self.source.uri.endsWith('.parquet')",
            "source.column and source.idColumn apply only to parquet sources",
            field_path=".source",
        ),
        cel(
            "!has(self.source.ids) || !has(self.source.idColumn)",
            "give ids either as source.ids or as source.idColumn, not both",
            field_path=".source.ids",
        ),
        ON_DRIFT_NEEDS_PROMETHEUS,
        cel(
            "!has(self.rollout.analysis) || !("
            + " || ".join(
                f"has(self.rollout.analysis.thresholds.{t})" for t in _MODEL_ONLY_THRESHOLDS
            )
            + ")",
            "rollout.analysis.thresholds maxProbeInertia, maxInertiaRatio and "
            "minProbeSilhouette apply to a ClusterModel only",
            field_path=".rollout.analysis.thresholds",
        ),
    )


class RecallPoint(Model):
    ef_search: int
    recall: float
    latency_us: float | None = None


class BuildRecord(Model):
    version: str
    vectors: int | None = None
    recall: float | None = None
    # A k-means build's (ClusterModel): k, training inertia, silhouette.
    clusters: int | None = Field(default=None, description="k-means: the k the build chose")
    inertia: float | None = Field(default=None, description="k-means: training inertia")
    silhouette: float | None = Field(default=None, description="k-means: silhouette (sampled)")
    ef_search: int | None = Field(default=None, description="the efSearch `recall` is at")
    recall_curve: list[RecallPoint] = Field(
        default_factory=list,
        max_length=32,
        description="recall@k of held-out probes by efSearch, measured by the build",
    )
    build_seconds: float | None = None
    artifact: str | None = None
    sha256: str | None = None
    outcome: Literal["Building", "Succeeded", "Failed"]
    message: str = ""
    started: str | None = None
    finished: str | None = None


class Measurement(Model):
    check: str = Field(description="Check name (built-in or custom)")
    revision: str = Field(description="Version judged")
    value: float | None = Field(default=None, description="Absent when there was no value")
    result: MeasurementResult = Field(description="Successful | Inconclusive | Error | Failed")
    limit: str = Field(default="", description="The check's limits, e.g. '<= 50 ms'")
    message: str = Field(
        default="", max_length=1024, description="Which value against which limit, or why none"
    )
    at: str = Field(description="When the run was taken (RFC 3339)")


class AnalysisStatus(Model):
    revision: str | None = Field(default=None, description="Version the counts are about")
    runs: int = Field(default=0, description="Runs so far (a run evaluates every check once)")
    failures: int = Field(default=0, description="Runs with a failed check")
    inconclusive: int = Field(default=0, description="Runs whose worst check had no data")
    errors: int = Field(default=0, description="Runs whose worst check was a query error")
    consecutive_errors: int = Field(default=0, description="Error runs in a row")
    last_result: MeasurementResult | None = Field(
        default=None, description="Worst result of the latest run"
    )
    last_run: str | None = Field(default=None, description="When the latest run was taken")
    message: str | None = Field(default=None, description="The latest run's worst check")
    last_measurements: list[Measurement] = Field(
        default_factory=list,
        max_length=MAX_MEASUREMENTS,
        description="Newest measurements, oldest first",
    )


RevisionState = Literal["Stable", "Canary", "Warm", "RolledBack", "Superseded", "Retired"]


class RevisionRecord(Model):
    """One serving revision: a version's artifact with one serving configuration."""

    revision: str = Field(description="<version>-<digest of the serving inputs>")
    version: str = Field(description="the artifact version it serves")
    ef_search: int | None = Field(default=None, description="an index's; a model has none")
    # The rest of what it serves with: a revision's Deployment is made from its
    # record, never from a spec that may since have moved on.
    image: str
    workers: int
    resources: Resources | None = None
    probe_interval_seconds: int
    pod: PodOverrides | None = None
    disruption_budget: bool = Field(
        default=False, description="a PodDisruptionBudget has been made for it"
    )
    autoscaled: bool = Field(
        default=False, description="its replica count has been handed to the autoscaler"
    )
    state: RevisionState
    since: str = Field(description="when it entered this state")
    scale_down_at: str | None = Field(
        default=None, description="Warm: when it scales to zero (scaleDownDelaySeconds)"
    )
    message: str = ""


class RolloutState(Model):
    """The canary's progress through spec.rollout.steps: everything a restarted
    operator needs to continue where it was."""

    revision: str
    started_at: str
    step: int = Field(default=0, description="index of the current step; len(steps) when done")
    step_started_at: str | None = Field(
        default=None, description="when the current step began (its weight was reached)"
    )
    weight: int = Field(default=0, description="the weight the steps ask for now")
    paused_reason: str | None = Field(
        default=None, description="held until knn.dev/promote: an indefinite pause or analysis"
    )
    next_analysis_at: str | None = None
    analysis_runs: int = Field(
        default=0, description="consecutive passing analysis runs (promotion needs one)"
    )


class RolledBack(Model):
    revision: str
    cause: str = Field(
        description="AnalysisFailed | AnalysisInconclusive | AnalysisErrors | AbortedByUser"
    )
    message: str
    at: str = Field(description="when the breach was measured (or the abort asked for)")
    traffic_restored_at: str | None = Field(
        default=None, description="when the canary had no serving pod left: all traffic on stable"
    )


class RouteStatus(Model):
    """The route a gatewayAPI or istio router splits traffic in, and the weight the
    operator last set there (a different weight read back was set by someone else)."""

    kind: str = Field(description="HTTPRoute | VirtualService")
    name: str
    weight: int | None = Field(
        default=None, ge=0, le=100, description="the canary's weight the operator last set"
    )


class HandledActions(Model):
    """The value of each action annotation the operator has acted on (it never
    writes metadata, so a new value is a new request)."""

    promote: str | None = None
    abort: str | None = None
    retry: str | None = None
    rebuild: str | None = Field(
        default=None, description="the knn.dev/rebuild value the target version was built for"
    )


class WorkloadStatus(Model):
    """The status every kind shares: phase, revisions, builds, the rollout."""

    phase: Phase | None = None
    observed_generation: int | None = None
    stable_version: str | None = None
    stable_revision: str | None = None
    canary_version: str | None = None
    canary_revision: str | None = None
    canary_weight: int | None = Field(
        default=None, description="the canary's share of traffic as the router reports it"
    )
    current_step: int | None = None
    target_version: str | None = None
    target_revision: str | None = None
    builds: list[BuildRecord] = Field(default_factory=list, max_length=50)
    revisions: list[RevisionRecord] = Field(default_factory=list, max_length=20)
    rollout: RolloutState | None = None
    rolled_back: RolledBack | None = None
    handled_actions: HandledActions = Field(default_factory=HandledActions)
    analysis: AnalysisStatus | None = None
    last_rebuild: LastRebuild | None = Field(
        default=None, description="The latest rebuild a trigger (schedule, drift) started"
    )
    next_scheduled_rebuild: str | None = Field(
        default=None, description="When rebuild.schedule fires next (RFC 3339)"
    )
    drift: DriftStatus | None = Field(
        default=None, description="rebuild.onDrift: the stable revision's drift, last measured"
    )
    route: RouteStatus | None = None
    conditions: list[Condition] = Field(default_factory=list, max_length=16)
    message: str | None = None


class KnnIndexStatus(WorkloadStatus):
    recall: float | None = Field(
        default=None, description="the serving revision's recorded recall at its efSearch"
    )
    serving_ef_search: int | None = Field(
        default=None, description="the efSearch the stable version serves with"
    )
