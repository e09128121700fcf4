"""The PodDisruptionBudget of one serving revision (spec.serving.disruptionBudget)."""

from __future__ import annotations

from ..models.common import DisruptionBudget
from .common import Manifest, Owner, deployment_name, metadata
from .service import revision_selector


def disruption_budget(owner: Owner, revision: str, budget: DisruptionBudget) -> Manifest:
    """Named like the revision's Deployment and selecting exactly its pods: a budget per
    revision, so a canary's few pods are not counted against the stable's."""
    selector = revision_selector(owner, revision)
    spec: Manifest = {"selector": {"matchLabels": selector}}
    if budget.max_unavailable is not None:
        spec["maxUnavailable"] = budget.max_unavailable
    else:
        spec["minAvailable"] = budget.min_available
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(owner, deployment_name(owner, revision), selector),
        "spec": spec,
    }
