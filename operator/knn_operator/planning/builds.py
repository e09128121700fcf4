"""Builds: start the target version's Job, fold finished Jobs into build records,
and delete artifacts of versions beyond history. Pure."""

from __future__ import annotations

import datetime as dt

from ..builders.common import artifact_uri, job_name
from ..builders.job import artifact_gc_job
from ..events import Event
from ..models.knnindex import BuildRecord
from ..settings import Settings
from ..timeutil import iso
from .types import Observed, Plan

# Succeeded records are bounded by history.limit (older ones leave once their
# artifact is deleted); failed attempts are only kept this many.
MAX_FAILED_RECORDS = 10


def record(builds: list[BuildRecord], version: str) -> BuildRecord | None:
    return next((b for b in builds if b.version == version), None)


def upsert(builds: list[BuildRecord], rec: BuildRecord) -> list[BuildRecord]:
    out = [b for b in builds if b.version != rec.version] + [rec]
    failed = [b.version for b in out if b.outcome == "Failed"]
    drop = set(failed[:-MAX_FAILED_RECORDS])
    return [b for b in out if b.version not in drop]


def _track_build(
    obs: Observed,
    target: str,
    builds: list[BuildRecord],
    plan: Plan,
    settings: Settings,
    now: dt.datetime,
) -> list[BuildRecord]:
    """Create the target's Job, or fold its outcome into the build records."""
    rec = record(builds, target)
    job = obs.jobs.get(target)
    if rec is not None and rec.outcome in ("Succeeded", "Failed") and (job is None or job.finished):
        return builds  # decided; a failed version waits for a spec change or a rebuild
    if job is None:
        plan.apply.append(
            obs.workload.builder_job(obs.owner, obs.spec, obs.status, target, settings)
        )
        if rec is None:
            plan.events.append(
                Event(
                    "Normal",
                    "BuildStarted",
                    f"building version {target} in Job {job_name(obs.owner, target)}",
                )
            )
        return upsert(builds, BuildRecord(version=target, outcome="Building", started=iso(now)))
    if not job.finished:
        if rec is None:
            rec = BuildRecord(version=target, outcome="Building", started=iso(now))
        return upsert(builds, _waiting(rec, job.waiting, job.name, plan))
    started = rec.started if rec else None
    s = job.summary
    if job.succeeded and s is not None and s.outcome == "Succeeded":
        base = BuildRecord(
            version=target,
            outcome="Succeeded",
            artifact=s.artifact or artifact_uri(obs.spec, target),
            sha256=s.sha256,
            started=started,
            finished=iso(now),
        )
        rec, message = obs.workload.built(obs.spec, s, base)
        plan.events.append(Event("Normal", "BuildSucceeded", message))
        return upsert(builds, rec)
    if job.succeeded:
        message = "builder Job completed but left no build summary in its termination message"
    else:
        message = job.message or f"builder Job failed ({job.reason})"
    plan.events.append(Event("Warning", "BuildFailed", f"version {target}: {message}"))
    return upsert(
        builds,
        BuildRecord(
            version=target, outcome="Failed", message=message, started=started, finished=iso(now)
        ),
    )


def _waiting(rec: BuildRecord, waiting: str, job: str, plan: Plan) -> BuildRecord:
    """A builder pod that cannot start says why in the build record (and the Built
    condition), with one Warning Event per new reason; cleared once it runs."""
    message = f"builder pod of Job {job} cannot start: {waiting}" if waiting else ""
    if message and message != rec.message:
        event = Event("Warning", "BuilderPodWaiting", f"version {rec.version}: {message}")
        plan.events.append(event)
    return rec.model_copy(update={"message": message})


def kept_versions(builds: list[BuildRecord], limit: int, pinned: set[str]) -> set[str]:
    succeeded = [b.version for b in builds if b.outcome == "Succeeded"]
    return set(succeeded[-limit:]) | pinned


def collect_artifacts(
    obs: Observed, builds: list[BuildRecord], kept: set[str], out: Plan, settings: Settings
) -> list[BuildRecord]:
    """Artifacts of versions beyond history are deleted by a clean-up Job; the
    build record stays until that Job has succeeded, so nothing is forgotten."""
    for rec in [b for b in builds if b.outcome == "Succeeded" and b.version not in kept]:
        gc = obs.gc_jobs.get(rec.version)
        if gc is None:
            out.apply.append(artifact_gc_job(obs.owner, obs.spec, rec.version, settings))
        elif gc.finished and gc.succeeded:
            builds = [b for b in builds if b.version != rec.version]
            out.events.append(
                Event("Normal", "ArtifactDeleted", f"version {rec.version}: deleted {rec.artifact}")
            )
        elif gc.finished and not rec.message.startswith("artifact deletion failed"):
            message = f"artifact deletion failed: {gc.message or gc.reason}"
            builds = upsert(builds, rec.model_copy(update={"message": message}))
            out.events.append(
                Event("Warning", "ArtifactDeletionFailed", f"version {rec.version}: {message}")
            )
    return builds


def builds_stage(
    obs: Observed, settings: Settings, now: dt.datetime, out: Plan, trigger: str | None = None
) -> tuple[str, list[BuildRecord]]:
    target = obs.workload.version(obs.spec, obs.rebuild_annotation, trigger)
    builds = _track_build(obs, target, list(obs.status.builds), out, settings, now)
    # A build the spec moved away from before it finished: its Job is deleted
    # below, so its record goes too (else they pile up past the status's maxItems).
    for rec in [b for b in builds if b.outcome == "Building" and b.version != target]:
        builds = [b for b in builds if b.version != rec.version]
        out.events.append(
            Event(
                "Normal",
                "BuildSuperseded",
                f"version {rec.version} was superseded by {target} before it finished",
            )
        )
    return target, builds
