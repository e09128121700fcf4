"""PodDisruptionBudgets of the serving revisions: made while spec.serving asks for
them, removed when it stops asking or the revision goes. Which revisions have one is
recorded in their status records, so the plan never needs to list them."""

from __future__ import annotations

from ..builders.common import deployment_name
from ..builders.disruption import disruption_budget
from ..models.knnindex import RevisionRecord
from .types import Observed, Plan


def has_deployment(obs: Observed, rec: RevisionRecord, sizes: dict[str, int | None]) -> bool:
    """A revision keeps a Deployment while it has pods, or once made (scaled to zero)."""
    return sizes[rec.revision] != 0 or rec.revision in obs.deployments


def budgets_stage(
    obs: Observed, revisions: list[RevisionRecord], sizes: dict[str, int | None], out: Plan
) -> list[RevisionRecord]:
    budget, owner = obs.spec.serving.disruption_budget, obs.owner
    recs = []
    for rec in revisions:
        if budget is not None and has_deployment(obs, rec, sizes):
            out.apply.append(disruption_budget(owner, rec.revision, budget))
            recs.append(rec.model_copy(update={"disruption_budget": True}))
        elif rec.disruption_budget:
            out.delete.append(("PodDisruptionBudget", deployment_name(owner, rec.revision)))
            recs.append(rec.model_copy(update={"disruption_budget": False}))
        else:
            recs.append(rec)
    kept = {r.revision for r in revisions}
    for old in obs.status.revisions:
        if old.disruption_budget and old.revision not in kept:
            out.delete.append(("PodDisruptionBudget", deployment_name(owner, old.revision)))
    return recs
