"""The k-means validation gate. Pure: the measured model and thresholds in, a
GateFailedError naming every failed check out.

Failing it exits 1 (BuildExit.GATE_FAILED, the HNSW recall gate's code) and
publishes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class GateFailedError(Exception):
    pass


@dataclass(frozen=True)
class Thresholds:
    min_silhouette: float | None
    # Every cluster must hold at least this fraction of an even share of the
    # training rows (rows / k); empty clusters fail even at 0.
    min_cluster_fraction: float
    max_inertia_regression: float


@dataclass(frozen=True)
class Measured:
    silhouette: float
    cluster_sizes: Sequence[int]
    # Mean squared distance on the previous version's probe points: its own
    # model's and this one's (None without --previous).
    previous_mean: float | None = None
    this_on_previous_mean: float | None = None


def inertia_regression(previous_mean: float, this_mean: float) -> float:
    """Relative growth of the probe inertia: 0.1 is 10% worse than the previous model."""
    if previous_mean <= 0.0:
        # Every previous probe sat on a centroid: any distance is a regression.
        return 0.0 if this_mean <= 0.0 else float("inf")
    return this_mean / previous_mean - 1.0


def failures(m: Measured, t: Thresholds) -> list[str]:
    out: list[str] = []
    if t.min_silhouette is not None and m.silhouette < t.min_silhouette:
        out.append(f"silhouette {m.silhouette:.4f} is below --min-silhouette {t.min_silhouette}")
    k = len(m.cluster_sizes)
    rows = sum(m.cluster_sizes)
    floor = t.min_cluster_fraction * rows / k
    small = [(i, s) for i, s in enumerate(m.cluster_sizes) if s == 0 or s < floor]
    if small:
        listed = ", ".join(f"cluster {i}: {s} rows" for i, s in small[:5])
        more = f" and {len(small) - 5} more" if len(small) > 5 else ""
        out.append(
            f"{len(small)} of {k} clusters are empty or hold fewer than {floor:.1f} training "
            f"rows (--min-cluster-fraction {t.min_cluster_fraction} of an even share of "
            f"{rows} rows): {listed}{more}"
        )
    if m.previous_mean is not None and m.this_on_previous_mean is not None:
        growth = inertia_regression(m.previous_mean, m.this_on_previous_mean)
        if growth > t.max_inertia_regression:
            out.append(
                f"inertia on the previous version's probe points is {growth:+.1%} against it "
                f"(mean squared distance {m.this_on_previous_mean:.6g} vs "
                f"{m.previous_mean:.6g}), above --max-inertia-regression "
                f"{t.max_inertia_regression}"
            )
    return out


def check(m: Measured, t: Thresholds) -> None:
    failed = failures(m, t)
    if failed:
        raise GateFailedError("validation gate failed: " + "; ".join(failed))
