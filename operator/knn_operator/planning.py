"""Decide, from what is observed, what a KnnIndex needs. Pure: no I/O, no clock.

The planner is level-based: given the spec, the last status and the owned
objects as they are now, it returns the objects to apply, those to delete,
the new status and the Events for transitions. Running it twice on the same
input gives the same plan, which is what makes a restarted operator resume.

Until progressive delivery lands, a built version whose Deployment is
available replaces the stable version directly.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from knn_contracts import status as names

from .builders.common import Manifest, Owner, artifact_uri, deployment_name, job_name
from .builders.deployment import serving_deployment
from .builders.job import artifact_gc_job, builder_job
from .builders.service import stable_service, version_service
from .conditions import set_condition
from .efsearch import Verdict, judge, recorded_recall
from .events import Event
from .models.common import Condition
from .models.knnindex import BuildRecord, KnnIndexSpec, KnnIndexStatus, Phase, RecallPoint
from .observe import DeploymentState, JobState
from .settings import Settings
from .timeutil import iso
from .versioning import version_of

# Succeeded records are bounded by history.limit (older ones leave once their
# artifact is deleted); failed attempts are only kept this many.
MAX_FAILED_RECORDS = 10


@dataclass(frozen=True)
class Observed:
    owner: Owner
    generation: int
    spec: KnnIndexSpec
    status: KnnIndexStatus
    jobs: Mapping[str, JobState]  # by version
    deployments: Mapping[str, DeploymentState]  # by version
    rebuild_annotation: str | None = None
    gc_jobs: Mapping[str, JobState] = field(default_factory=dict)  # artifact clean-up, by version


@dataclass
class Plan:
    apply: list[Manifest] = field(default_factory=list)
    delete: list[tuple[str, str]] = field(default_factory=list)  # (kind, name)
    status: KnnIndexStatus = field(default_factory=KnnIndexStatus)
    events: list[Event] = field(default_factory=list)
    # Seconds until the plan wants another look even if nothing changes (a pause
    # ending, the next analysis, a warm stable to scale down); None: only on events.
    requeue_after: float | None = None

    def wake_within(self, seconds: float) -> None:
        """Ask to run again within `seconds` (the earliest of all requests wins)."""
        seconds = max(0.0, seconds)
        if self.requeue_after is None or seconds < self.requeue_after:
            self.requeue_after = seconds


def _record(builds: list[BuildRecord], version: str) -> BuildRecord | None:
    return next((b for b in builds if b.version == version), None)


def _upsert(builds: list[BuildRecord], rec: BuildRecord) -> list[BuildRecord]:
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
    rec = _record(builds, target)
    job = obs.jobs.get(target)
    if rec is not None and rec.outcome in ("Succeeded", "Failed") and (job is None or job.finished):
        return builds  # decided; a failed version waits for a spec change or a rebuild
    if job is None:
        plan.apply.append(builder_job(obs.owner, obs.spec, target, settings))
        if rec is None:
            plan.events.append(
                Event(
                    "Normal",
                    "BuildStarted",
                    f"building version {target} in Job {job_name(obs.owner, target)}",
                )
            )
        return _upsert(builds, BuildRecord(version=target, outcome="Building", started=iso(now)))
    if not job.finished:
        if rec is None:
            rec = BuildRecord(version=target, outcome="Building", started=iso(now))
        return _upsert(builds, rec)
    started = rec.started if rec else None
    s = job.summary
    if job.succeeded and s is not None and s.outcome == "Succeeded":
        rec = BuildRecord(
            version=target,
            outcome="Succeeded",
            vectors=s.vectors,
            recall=s.recall,
            ef_search=s.ef_search,
            recall_curve=[
                RecallPoint(ef_search=c.ef_search, recall=c.recall, latency_us=c.latency_us)
                for c in s.recall_curve()
            ],
            build_seconds=s.build_seconds,
            artifact=s.artifact or artifact_uri(obs.spec, target),
            sha256=s.sha256,
            started=started,
            finished=iso(now),
        )
        ef = obs.spec.hnsw.ef_search
        at = recorded_recall(rec, ef)
        recall = f"recall {at} at efSearch {ef}" if at is not None else f"recall {s.recall}"
        plan.events.append(
            Event(
                "Normal",
                "BuildSucceeded",
                f"version {target}: {s.vectors} vectors, {recall}, {s.build_seconds}s",
            )
        )
        return _upsert(builds, rec)
    if job.succeeded:
        message = "builder Job completed but left no build summary in its termination message"
    else:
        message = job.message or f"builder Job failed ({job.reason})"
    plan.events.append(Event("Warning", "BuildFailed", f"version {target}: {message}"))
    return _upsert(
        builds,
        BuildRecord(
            version=target, outcome="Failed", message=message, started=started, finished=iso(now)
        ),
    )


def _kept_versions(builds: list[BuildRecord], limit: int, pinned: set[str]) -> set[str]:
    succeeded = [b.version for b in builds if b.outcome == "Succeeded"]
    return set(succeeded[-limit:]) | pinned


def _collect_artifacts(
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
            builds = _upsert(builds, rec.model_copy(update={"message": message}))
            out.events.append(
                Event("Warning", "ArtifactDeletionFailed", f"version {rec.version}: {message}")
            )
    return builds


def plan(obs: Observed, settings: Settings, now: dt.datetime) -> Plan:
    """Builds, then which version serves, then what is kept, then status."""
    out = Plan()
    target, builds = _builds_stage(obs, settings, now, out)
    serving = _serving_stage(obs, builds, target, out)
    builds = _retention_stage(obs, builds, serving, settings, out)
    out.status = _status_stage(obs, builds, serving, now, out)
    return out


@dataclass(frozen=True)
class Serving:
    """Which version serves, and how the target stands."""

    target: BuildRecord
    verdict: Verdict | None  # the spec's efSearch for the target, once it is built
    stable: str | None
    stable_ef: int | None

    @property
    def refused(self) -> bool:
        return self.verdict is not None and not self.verdict.accepted

    @property
    def target_ready(self) -> bool:
        return self.target.outcome == "Succeeded" and not self.refused


def _builds_stage(
    obs: Observed, settings: Settings, now: dt.datetime, out: Plan
) -> tuple[str, list[BuildRecord]]:
    target = version_of(obs.spec, obs.rebuild_annotation)
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


def _serving_stage(obs: Observed, builds: list[BuildRecord], target: str, out: Plan) -> Serving:
    """The stable version: the old one, or the target once its Deployment is available
    and its efSearch is accepted."""
    spec = obs.spec
    target_rec = _record(builds, target)
    assert target_rec is not None
    verdict = (
        judge(target_rec, spec.hnsw.ef_search, spec.build.validation.min_recall)
        if target_rec.outcome == "Succeeded"
        else None
    )
    stable = obs.status.stable_version
    if stable is not None and _record(builds, stable) is None:
        stable = None  # its record aged out; nothing to serve from
    draft = Serving(target_rec, verdict, stable, None)
    if draft.target_ready and target != stable:
        dep = obs.deployments.get(target)
        if dep is not None and dep.is_available:
            out.events.append(
                Event(
                    "Normal",
                    "Promoted",
                    f"version {target} is available and now serves the {obs.owner.name} Service"
                    + (f" (was {stable})" if stable else ""),
                )
            )
            stable = target
    return Serving(
        target_rec, verdict, stable, _stable_ef(obs, builds, stable, target, draft.refused)
    )


def _retention_stage(
    obs: Observed, builds: list[BuildRecord], serving: Serving, settings: Settings, out: Plan
) -> list[BuildRecord]:
    """Warm: the stable version and a built target. Kept: the last history.limit
    built versions, scaled to zero. Everything older is deleted."""
    spec, stable, target = obs.spec, serving.stable, serving.target.version
    warm = {v for v in (stable, target if serving.target_ready else None) if v}
    kept = _kept_versions(builds, spec.history.limit, warm | {target})
    for v in sorted(kept):
        if v in warm or v in obs.deployments:
            replicas = spec.serving.replicas if v in warm else 0
            ef = serving.stable_ef if v == stable else spec.hnsw.ef_search
            out.apply.append(serving_deployment(obs.owner, spec, v, replicas, settings, ef))
            out.apply.append(version_service(obs.owner, v))
    if stable is not None:
        out.apply.append(stable_service(obs.owner, stable))
    for v, dep in sorted(obs.deployments.items()):
        if v not in kept:
            out.delete += [("Deployment", dep.name), ("Service", deployment_name(obs.owner, v))]
    for v, job in sorted(obs.jobs.items()):
        if v not in kept:
            out.delete.append(("Job", job.name))
    return _collect_artifacts(obs, builds, kept, out, settings)


def _phase(obs: Observed, serving: Serving, stable_ok: bool) -> Phase:
    outcome, stable = serving.target.outcome, serving.stable
    if outcome == "Failed" or (serving.refused and stable is None):
        return "Failed"
    if outcome == "Building":
        return "Building" if stable is None else "Progressing"
    if serving.target.version != stable and not serving.refused:
        return "Progressing"
    if stable_ok:
        return "Serving"
    return "Degraded" if obs.status.phase in ("Serving", "Degraded") else "Progressing"


def _status_stage(
    obs: Observed, builds: list[BuildRecord], serving: Serving, now: dt.datetime, out: Plan
) -> KnnIndexStatus:
    old, stable, target_rec = obs.status, serving.stable, serving.target
    target = target_rec.version
    stable_dep = obs.deployments.get(stable) if stable else None
    stable_ok = stable_dep is not None and stable_dep.is_serving
    phase = _phase(obs, serving, stable_ok)
    gen = obs.generation
    conds = list(old.conditions)
    conds = set_condition(
        conds,
        "Built",
        {"Succeeded": True, "Failed": False, "Building": None}[target_rec.outcome],
        {"Succeeded": "BuildSucceeded", "Failed": "BuildFailed", "Building": "Building"}[
            target_rec.outcome
        ],
        target_rec.message or f"version {target}",
        gen,
        now,
    )
    conds = set_condition(
        conds,
        "Ready",
        stable_ok,
        "Available" if stable_ok else ("NoStableVersion" if stable is None else "Unavailable"),
        f"version {stable} serves traffic" if stable_ok else "no version is available to serve",
        gen,
        now,
    )
    conds = _serving_spec_condition(conds, old, serving.verdict, gen, now, out)
    progressing = target != stable and target_rec.outcome != "Failed" and not serving.refused
    conds = set_condition(
        conds,
        "Progressing",
        progressing,
        "NewVersion" if progressing else "Stable",
        f"rolling out version {target}" if progressing else "no rollout in progress",
        gen,
        now,
    )
    degraded = stable is not None and not stable_ok and phase == "Degraded"
    conds = set_condition(
        conds,
        "Degraded",
        degraded,
        "StableUnavailable" if degraded else "AsExpected",
        f"version {stable} has too few available replicas" if degraded else "",
        gen,
        now,
    )
    if phase != old.phase:
        kind = "Warning" if phase in ("Failed", "Degraded", "RolledBack") else "Normal"
        out.events.append(Event(kind, phase, f"phase {old.phase or 'none'} → {phase}"))

    stable_rec = _record(builds, stable) if stable else None
    stable_ef = serving.stable_ef
    message = target_rec.message if target_rec.outcome == "Failed" else None
    if serving.refused and serving.verdict is not None:
        message = serving.verdict.message + (
            f"; version {stable} keeps serving at efSearch {stable_ef}" if stable else ""
        )
    return KnnIndexStatus(
        phase=phase,
        observed_generation=gen,
        stable_version=stable,
        canary_version=None,
        canary_weight=None,
        current_step=None,
        recall=recorded_recall(stable_rec, stable_ef) if stable_rec and stable_ef else None,
        serving_ef_search=stable_ef,
        target_version=target,
        builds=builds,
        analysis=old.analysis,
        conditions=conds,
        message=message,
    )


def _stable_ef(
    obs: Observed, builds: list[BuildRecord], stable: str | None, target: str, refused: bool
) -> int | None:
    """The efSearch the stable version serves with: the spec's, unless the spec's is
    refused for it; then the one it served with before (never a refused one)."""
    if stable is None:
        return None
    ef = obs.spec.hnsw.ef_search
    rec = _record(builds, stable)
    if stable == target:
        accepted = not refused
    else:
        accepted = rec is not None and judge(rec, ef, obs.spec.build.validation.min_recall).accepted
    if accepted:
        return ef
    return obs.status.serving_ef_search or (rec.ef_search if rec else None) or ef


def _serving_spec_condition(
    conds: list[Condition],
    old: KnnIndexStatus,
    verdict: Verdict | None,
    gen: int,
    now: dt.datetime,
    out: Plan,
) -> list[Condition]:
    """ServingSpecAccepted, and a Warning Event when a refusal is new or changes."""
    kind = names.CONDITION_SERVING_SPEC_ACCEPTED
    if verdict is None:
        return set_condition(
            conds, kind, None, names.REASON_NOT_BUILT, "the target version is not built", gen, now
        )
    if not verdict.accepted:
        before = next((c for c in old.conditions if c.type == kind), None)
        if before is None or before.status != "False" or before.message != verdict.message:
            out.events.append(Event("Warning", names.EVENT_EF_SEARCH_REFUSED, verdict.message))
    return set_condition(conds, kind, verdict.accepted, verdict.reason, verdict.message, gen, now)
