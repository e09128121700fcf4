"""Is a serving efSearch good enough for a version? Judged on the recall curve
its build measured on held-out probes. Pure.

An efSearch whose recorded recall is under build.validation.minRecall is refused:
the version is not promoted at it, and a stable version keeps the efSearch it
serves with. An efSearch between the gate and the rollout's analysis threshold
is accepted here: judging that is the canary analysis's job.
"""

from __future__ import annotations

from dataclasses import dataclass

from knn_contracts import status as names
from knn_contracts.artifact import CurvePoint, recall_at, smallest_ef_reaching

from .models.knnindex import BuildRecord


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    reason: str
    message: str
    recall: float | None  # recorded recall at that efSearch, if known


def curve_of(rec: BuildRecord) -> list[CurvePoint]:
    return [
        CurvePoint(ef_search=p.ef_search, recall=p.recall, latency_us=p.latency_us or 0.0)
        for p in rec.recall_curve
    ]


def recorded_recall(rec: BuildRecord, ef_search: int) -> float | None:
    """The recall the build measured at this efSearch (or the highest measured
    efSearch below it), else the summary's recall if that was at this efSearch."""
    if rec.recall_curve:
        return recall_at(curve_of(rec), ef_search)
    return rec.recall if rec.ef_search in (None, ef_search) else None


def judge(rec: BuildRecord, ef_search: int, min_recall: float) -> Verdict:
    if rec.outcome != "Succeeded":
        return Verdict(False, names.REASON_NOT_BUILT, f"version {rec.version} is not built", None)
    if not rec.recall_curve:
        return Verdict(
            True,
            names.REASON_NO_RECALL_CURVE,
            f"version {rec.version} was built without a recall curve; efSearch {ef_search} "
            "is not checked",
            rec.recall,
        )
    curve = curve_of(rec)
    recall = recall_at(curve, ef_search)
    if recall is not None and recall >= min_recall:
        return Verdict(
            True,
            names.REASON_ACCEPTED,
            f"efSearch {ef_search}: recorded recall {recall:.4f} (minRecall {min_recall})",
            recall,
        )
    best = smallest_ef_reaching(curve, min_recall)
    hint = (
        f"efSearch {best} reaches {recall_at(curve, best):.4f}"
        if best is not None
        else "no measured efSearch reaches it"
    )
    got = f"a recorded recall of {recall:.4f}" if recall is not None else "no recorded recall"
    return Verdict(
        False,
        names.REASON_EF_SEARCH_BELOW_MIN_RECALL,
        f"efSearch {ef_search} has {got} for version {rec.version}, below "
        f"build.validation.minRecall {min_recall}; {hint}",
        recall,
    )
