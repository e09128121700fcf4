"""What ended in this pass, for the operator's metrics: rollouts by outcome, and
the time from a breach to all traffic on the stable revision. Pure."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from knn_contracts import rollout as names

from ..timeutil import iso, parse_iso
from .serving import Serving
from .types import Observed, Plan


def outcomes_stage(obs: Observed, serving: Serving, now: dt.datetime, out: Plan) -> Serving:
    o = serving.outcome
    if o.promoted_from is not None:
        out.outcomes.append(names.OUTCOME_PROMOTED)
    if o.aborted is not None and o.rolled_back is not None:
        user = o.rolled_back.cause == names.CAUSE_USER
        out.outcomes.append(names.OUTCOME_ABORTED if user else names.OUTCOME_ROLLED_BACK)
    if o.superseded is not None:
        out.outcomes.append(names.OUTCOME_SUPERSEDED)
    rb = o.rolled_back
    if rb is None or rb.traffic_restored_at is not None or o.aborted is not None:
        return serving  # the pass that aborts still sees the canary's pods serving
    dep = obs.deployments.get(rb.revision)
    if dep is not None and dep.available > 0:
        return serving
    breach = parse_iso(rb.at)
    if breach is not None and rb.cause != names.CAUSE_USER:
        out.breach_to_stable = max(0.0, (now - breach).total_seconds())
    restored = rb.model_copy(update={"traffic_restored_at": iso(now)})
    return replace(serving, outcome=replace(o, rolled_back=restored))
