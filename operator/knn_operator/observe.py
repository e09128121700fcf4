"""Turn raw Job, Pod and Deployment bodies into small observations. Pure."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from knn_contracts import api
from knn_contracts.artifact import BuildSummary
from pydantic import ValidationError

Body = Mapping[str, Any]


@dataclass(frozen=True)
class JobState:
    name: str
    version: str
    finished: bool
    succeeded: bool
    reason: str
    summary: BuildSummary | None
    message: str
    # Why the newest pod cannot start (a missing Secret, an image that cannot be
    # pulled), as the kubelet says it; empty while it starts or runs normally.
    waiting: str = ""


@dataclass(frozen=True)
class DeploymentState:
    name: str
    version: str
    replicas: int
    available: int
    updated: int
    observed_current: bool
    # The Deployment controller's Available condition: no fewer replicas available
    # than the rollout strategy's maxUnavailable allows.
    minimum_available: bool = False
    # Why the Deployment controller gave up on it, in its words (Progressing=False
    # after progressDeadlineSeconds: pods that cannot be scheduled or start; or
    # ReplicaFailure: pods that cannot be created, e.g. over quota); else "".
    stalled: str = ""

    @property
    def is_available(self) -> bool:
        """All desired replicas of the current template available (and at least one)."""
        return (
            self.observed_current
            and self.available >= max(self.replicas, 1)
            and (self.updated >= self.replicas)
        )

    @property
    def is_serving(self) -> bool:
        """Serves traffic: a replica is available and the Deployment is not below its
        minimum. A scale-up or a rolling update of its template (serving.replicas,
        hnsw.efSearch) leaves it serving; being fully available is for promotion."""
        return self.available >= 1 and (self.minimum_available or self.is_available)


def _labels(body: Body) -> Mapping[str, str]:
    return body.get("metadata", {}).get("labels") or {}


def _condition(body: Body, kind: str) -> Mapping[str, Any] | None:
    for c in body.get("status", {}).get("conditions") or []:
        if c.get("type") == kind and c.get("status") == "True":
            return c  # type: ignore[no-any-return]
    return None


def termination_message(pod: Body) -> str | None:
    for cs in pod.get("status", {}).get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get(
            "terminated"
        )
        if term and term.get("message"):
            return str(term["message"])
    return None


# Waiting reasons that do not clear by themselves; ContainerCreating and
# PodInitializing are a pod starting normally.
STUCK_REASONS = frozenset(
    {
        "CreateContainerConfigError",
        "CreateContainerError",
        "ErrImagePull",
        "ImagePullBackOff",
        "ErrImageNeverPull",
        "InvalidImageName",
        "CrashLoopBackOff",
    }
)


def waiting_reason(pod: Body) -> str:
    """`Reason: message` of a container the kubelet cannot start, else ''."""
    for cs in pod.get("status", {}).get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in STUCK_REASONS:
            message = str(waiting.get("message") or "").strip()
            return f"{waiting['reason']}: {message}" if message else str(waiting["reason"])
    return ""


def parse_summary(text: str | None) -> BuildSummary | None:
    """The builder writes one JSON line; with FallbackToLogsOnError the message
    may be a log tail instead, whose last JSON line (if any) is the summary."""
    if not text:
        return None
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return BuildSummary.model_validate(json.loads(line))
            except (ValueError, ValidationError):
                continue
    return None


def job_state(job: Body, pods: Iterable[Body]) -> JobState:
    meta = job.get("metadata", {})
    version = _labels(job).get(api.LABEL_VERSION, "")
    complete = _condition(job, "Complete")
    failed = _condition(job, "Failed")
    # The newest pod's message is the attempt that decided the Job.
    ordered = sorted(pods, key=lambda p: p.get("metadata", {}).get("creationTimestamp") or "")
    messages = [m for m in (termination_message(p) for p in ordered) if m]
    text = messages[-1] if messages else None
    summary = parse_summary(text)
    if complete:
        return JobState(meta.get("name", ""), version, True, True, "Complete", summary, "")
    if failed:
        reason = str(failed.get("reason") or "Failed")
        detail = (summary.message if summary and summary.message else None) or (
            (text or "").strip().splitlines()[-1] if text else str(failed.get("message") or "")
        )
        return JobState(meta.get("name", ""), version, True, False, reason, summary, detail)
    waiting = waiting_reason(ordered[-1]) if ordered else ""
    return JobState(meta.get("name", ""), version, False, False, "Running", summary, "", waiting)


def deployment_state(dep: Body) -> DeploymentState:
    meta = dep.get("metadata", {})
    status = dep.get("status", {}) or {}
    return DeploymentState(
        name=meta.get("name", ""),
        version=_labels(dep).get(api.LABEL_VERSION, ""),
        replicas=int(dep.get("spec", {}).get("replicas", 1)),
        available=int(status.get("availableReplicas") or 0),
        updated=int(status.get("updatedReplicas") or 0),
        observed_current=int(status.get("observedGeneration") or 0)
        >= int(meta.get("generation") or 0),
        minimum_available=_condition(dep, "Available") is not None,
        stalled=_stalled(dep),
    )


def _stalled(dep: Body) -> str:
    for c in dep.get("status", {}).get("conditions") or []:
        failed = c.get("type") == "ReplicaFailure" and c.get("status") == "True"
        deadline = c.get("type") == "Progressing" and c.get("status") == "False"
        if failed or deadline:
            reason, message = c.get("reason") or c["type"], str(c.get("message") or "").strip()
            return f"{reason}: {message}" if message else str(reason)
    return ""
