"""Drift of a live assignment stream against training. Pure: no I/O, no clock.

PSI (population stability index) of a live distribution q against the training
distribution p over the same bins::

    PSI = sum_i (q_i - p_i) * ln(q_i / p_i)

A bin that is empty on either side would make a term infinite, so both
proportions are floored at PSI_EPSILON first. 1e-4 is a hundredth of a percent:
below the share any real cluster of a model with at most a few thousand
clusters has, so it only matters for bins that are truly empty, and an
emptied-out bin of share p then adds about p * ln(p / 1e-4), a bounded
penalty instead of infinity. Rules of thumb: below 0.1 stable, 0.1-0.25 some
shift, above 0.25 a significant shift.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

PSI_EPSILON = 1e-4


def proportions(counts: Sequence[float] | npt.NDArray[np.generic]) -> npt.NDArray[np.float64]:
    arr = np.asarray(counts, dtype=np.float64)
    total = float(arr.sum())
    if arr.ndim != 1 or total <= 0.0 or (arr < 0).any():
        raise ValueError("counts must be a non-empty list of non-negative numbers, not all 0")
    out: npt.NDArray[np.float64] = arr / total
    return out


def psi(
    expected: Sequence[float] | npt.NDArray[np.generic],
    actual: Sequence[float] | npt.NDArray[np.generic],
    epsilon: float = PSI_EPSILON,
) -> float:
    """PSI of `actual` counts against `expected` counts (same bins, any totals)."""
    p = proportions(expected)
    q = proportions(actual)
    if p.shape != q.shape:
        raise ValueError(f"expected {p.shape[0]} bins, got {q.shape[0]}")
    p = np.maximum(p, epsilon)
    q = np.maximum(q, epsilon)
    return float(((q - p) * np.log(q / p)).sum())


# Histogram buckets: quantiles of the reference distances, then multiples of their
# p99. Distances that grow past anything in the reference are what a shifted input
# looks like, so the tail gets buckets of its own.
BUCKET_QUANTILES = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
TAIL_MULTIPLES = (1.5, 2.0, 3.0, 5.0, 10.0)


def _sig(x: float) -> float:
    return float(f"{x:.6g}")


def histogram_buckets(reference: npt.NDArray[np.floating]) -> list[float]:
    """Increasing, positive upper bounds fitted to `reference` distances."""
    qs = np.quantile(np.asarray(reference, dtype=np.float64), BUCKET_QUANTILES)
    p99 = float(qs[-1])
    bounds = {_sig(float(q)) for q in qs} | {_sig(p99 * m) for m in TAIL_MULTIPLES}
    # Only positive bounds: every reference at distance 0 (or, for inner product,
    # below it) still needs one bucket.
    return sorted(b for b in bounds if b > 0.0) or [1.0]


class MeanWindow:
    """The mean of the last `size` values, with a running sum."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self._values = np.zeros(size, dtype=np.float64)
        self._next = 0
        self._filled = 0
        self._sum = 0.0

    def __len__(self) -> int:
        return self._filled

    def push(self, value: float) -> float | None:
        """Add `value`; return the value it evicted, if the window was full."""
        evicted = None
        if self._filled == self.size:
            evicted = float(self._values[self._next])
            self._sum -= evicted
        else:
            self._filled += 1
        self._values[self._next] = value
        self._sum += value
        self._next = (self._next + 1) % self.size
        if self._next == 0:
            # Once per lap, re-summed exactly: a long run of += and -= drifts.
            self._sum = float(self._values[: self._filled].sum())
        return evicted

    def mean(self) -> float:
        return self._sum / self._filled if self._filled else math.nan


class SlidingWindow:
    """The last `size` assignments (cluster id and distance), with running counts.

    Not thread-safe: one owner (the server's event loop) adds and reads.
    """

    def __init__(self, size: int, clusters: int) -> None:
        if size < 1 or clusters < 1:
            raise ValueError("size and clusters must be at least 1")
        self.size = size
        self._labels = np.zeros(size, dtype=np.int64)
        self._distances = MeanWindow(size)
        self._next = 0
        self.counts = np.zeros(clusters, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._distances)

    def add(self, labels: npt.NDArray[np.int64], distances: npt.NDArray[np.float64]) -> None:
        # A batch larger than the window: only its last `size` rows can stay.
        labels, distances = labels[-self.size :], distances[-self.size :]
        for label, distance in zip(labels.tolist(), distances.tolist(), strict=True):
            if self._distances.push(distance) is not None:
                self.counts[self._labels[self._next]] -= 1
            self._labels[self._next] = label
            self.counts[label] += 1
            self._next = (self._next + 1) % self.size

    def mean_distance(self) -> float:
        return self._distances.mean()


# Assignments the window must hold before PSI is exported (or the whole window,
# if it is smaller): with fewer, sampling noise alone makes PSI large.
MIN_ASSIGNMENTS_FOR_PSI = 1000


@dataclass(frozen=True)
class DriftReading:
    assignments: int  # in the window
    psi: float | None  # None until the window holds enough assignments
    distance_ratio: float | None  # None with no assignment yet or a zero training mean


class DriftTracker:
    """The live side of drift for one model: a sliding window of assignments
    judged against the training cluster sizes and mean distance."""

    def __init__(
        self,
        training_sizes: Sequence[int],
        training_mean_distance: float,
        window: int,
        min_for_psi: int = MIN_ASSIGNMENTS_FOR_PSI,
    ) -> None:
        self.expected = proportions(training_sizes)
        self.training_mean = training_mean_distance
        self.window = SlidingWindow(window, len(training_sizes))
        self.min_for_psi = min(window, min_for_psi)

    def add(
        self, labels: npt.NDArray[np.int64], distances: npt.NDArray[np.float64]
    ) -> DriftReading:
        self.window.add(labels, distances)
        n = len(self.window)
        value = psi(self.expected, self.window.counts) if n >= self.min_for_psi else None
        ratio = (
            self.window.mean_distance() / self.training_mean
            if n and self.training_mean > 0.0
            else None
        )
        return DriftReading(n, value, ratio)


class QueryDrift:
    """For an index: the mean nearest-neighbour distance of the last `window` live
    queries against the probe set's (the same search, so the same distance)."""

    def __init__(self, probe_mean: float, window: int) -> None:
        self.probe_mean = probe_mean
        self.window = MeanWindow(window)

    def add(self, nearest: npt.NDArray[np.floating]) -> float | None:
        """Add each query's nearest distance; the ratio live/probe, or None where it
        means nothing (a probe mean of 0 or below, as inner product can give)."""
        for d in np.asarray(nearest, dtype=np.float64).tolist():
            self.window.push(d)
        if self.probe_mean <= 0.0 or not len(self.window):
            return None
        return self.window.mean() / self.probe_mean
