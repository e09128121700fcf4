"""Choosing k and describing a trained model. Pure: numbers in, numbers out.

With a range of k, the model served is the one with the highest silhouette on
the bounded sample (the elbow of inertia is recorded for people to read, but
inertia falls with every k, so it cannot choose on its own).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from knn_contracts.kmeans import DistanceSummary, ElbowPoint

from ..drift import BUCKET_QUANTILES, histogram_buckets

# Points of the elbow curve in the build summary: about 30 bytes each, so the
# summary stays far under the kubelet's 4,096-byte termination message.
SUMMARY_ELBOW_POINTS = 40
QUANTILES = BUCKET_QUANTILES


def parse_range(text: str) -> tuple[int, int]:
    """'MIN:MAX' (inclusive) → (MIN, MAX); ValueError naming the problem."""
    parts = text.split(":")
    if len(parts) != 2:
        raise ValueError(f"expected MIN:MAX, got {text!r}")
    try:
        lo, hi = int(parts[0]), int(parts[1])
    except ValueError:
        raise ValueError(f"expected two integers MIN:MAX, got {text!r}") from None
    if lo < 2:
        raise ValueError(f"MIN must be at least 2 (silhouette needs two clusters), got {lo}")
    if hi < lo:
        raise ValueError(f"MAX {hi} is below MIN {lo}")
    return lo, hi


def choose(elbow: Sequence[ElbowPoint]) -> ElbowPoint:
    """The point with the highest silhouette; on a tie the smaller k (the simpler model)."""
    if not elbow:
        raise ValueError("no k was tried")
    return max(elbow, key=lambda p: (p.silhouette, -p.k))


def _thin(points: Sequence[ElbowPoint], keep: int, must: int) -> list[ElbowPoint]:
    if len(points) <= keep:
        return list(points)
    picks = {round(i * (len(points) - 1) / (keep - 2)) for i in range(keep - 1)}
    chosen = [i for i, p in enumerate(points) if p.k == must]
    return [points[i] for i in sorted(picks | set(chosen))]


def compact_elbow(
    points: Sequence[ElbowPoint], chosen_k: int, keep: int = SUMMARY_ELBOW_POINTS
) -> list[tuple[int, float, float]]:
    """[k, inertia, silhouette] for the summary: at most `keep` evenly spread points
    (the ends and the chosen k always among them), 4 significant digits."""
    return [
        (p.k, float(f"{p.inertia:.4g}"), round(p.silhouette, 4))
        for p in _thin(points, keep, chosen_k)
    ]


def distance_summary(distances: npt.NDArray[np.float64]) -> DistanceSummary:
    """Mean, quantiles, and histogram buckets fitted to the training distances."""
    qs = np.quantile(distances, QUANTILES)
    buckets = histogram_buckets(distances)
    # side="left": a distance equal to a bound falls in that bound's bucket (le).
    which = np.searchsorted(np.asarray(buckets), distances, side="left")
    return DistanceSummary(
        mean=float(distances.mean()),
        quantiles={str(q): float(f"{v:.6g}") for q, v in zip(QUANTILES, qs, strict=True)},
        buckets=buckets,
        counts=np.bincount(which, minlength=len(buckets) + 1).tolist(),
    )
