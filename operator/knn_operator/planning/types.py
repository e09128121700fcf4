"""What the planner reads (Observed) and what it returns (Plan). Pure data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..builders.common import Manifest, Owner
from ..events import Event
from ..models.clustermodel import WorkloadSpec
from ..models.knnindex import AnalysisStatus, KnnIndexStatus, WorkloadStatus
from ..observe import DeploymentState, JobState
from ..rollout.machine import AnalysisVerdict
from ..routers.routes import RouteState, RouteWrite
from ..triggers.drift import DriftReading
from .workload import HNSW, Workload


@dataclass(frozen=True)
class Observed:
    owner: Owner
    generation: int
    spec: WorkloadSpec
    status: WorkloadStatus
    jobs: Mapping[str, JobState]  # builder Jobs, by version
    deployments: Mapping[str, DeploymentState]  # serving Deployments, by revision
    rebuild_annotation: str | None = None
    gc_jobs: Mapping[str, JobState] = field(default_factory=dict)  # artifact clean-up, by version
    # knn.dev/promote, /abort, /retry as they are on the object now.
    annotations: Mapping[str, str] = field(default_factory=dict)
    # The canary analysis measured before this pass, when one was due, and
    # status.analysis with that run folded in.
    analysis: AnalysisVerdict | None = None
    analysis_status: AnalysisStatus | None = None
    # The route a gatewayAPI or istio router splits traffic in, read before this pass.
    route: RouteState | None = None
    # The stable revision's drift (spec.rebuild.onDrift), measured before this pass
    # when a measurement was due.
    drift: DriftReading | None = None
    # What the kind serves (an HNSW index or a k-means model).
    workload: Workload = HNSW


@dataclass
class Plan:
    apply: list[Manifest] = field(default_factory=list)
    # Applied with a second field manager (FIELD_MANAGER_HANDOVER), once per revision,
    # so the replica count outlives the main manager's ownership (autoscaling).
    handover: list[Manifest] = field(default_factory=list)
    delete: list[tuple[str, str]] = field(default_factory=list)  # (kind, name)
    # Weights to set in routes the user owns (read-modify-write, after `apply`).
    routes: list[RouteWrite] = field(default_factory=list)
    status: WorkloadStatus = field(default_factory=KnnIndexStatus)
    events: list[Event] = field(default_factory=list)
    # Seconds until the plan wants another look even if nothing changes (a pause
    # ending, the next analysis); None: only when something it watches changes.
    requeue_after: float | None = None
    # Rollouts that ended in this pass (knn_contracts.rollout OUTCOME_*), and the
    # seconds from a breach to all traffic on stable when that completed now.
    outcomes: list[str] = field(default_factory=list)
    breach_to_stable: float | None = None
    # Retraining triggers that fired in this pass (knn_contracts.rollout TRIGGER_*).
    triggers: list[str] = field(default_factory=list)

    def wake_within(self, seconds: float | None) -> None:
        """Ask to run again within `seconds` (the earliest of all requests wins)."""
        if seconds is None:
            return
        seconds = max(0.0, seconds)
        if self.requeue_after is None or seconds < self.requeue_after:
            self.requeue_after = seconds
