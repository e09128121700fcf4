"""knn_serving.drift: PSI against scipy and a hand computation, the sliding window
against a deque, and the tracker's rule for when PSI is known."""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import pytest
from knn_serving.drift import (
    PSI_EPSILON,
    DriftTracker,
    MeanWindow,
    QueryDrift,
    SlidingWindow,
    histogram_buckets,
    proportions,
    psi,
)
from scipy.stats import entropy


def test_psi_is_the_symmetric_kl_divergence_without_empty_bins() -> None:
    p, q = [50, 30, 20], [40, 40, 20]
    want = float(entropy(q, p) + entropy(p, q))
    assert psi(p, q) == pytest.approx(want, abs=1e-12)
    # By hand: (0.4-0.5) ln(0.4/0.5) + (0.4-0.3) ln(0.4/0.3) + 0
    assert psi(p, q) == pytest.approx(0.1 * math.log(1.25) + 0.1 * math.log(4 / 3), abs=1e-12)


def test_identical_distributions_have_zero_psi_whatever_the_totals() -> None:
    assert psi([1, 2, 3], [10, 20, 30]) == pytest.approx(0.0, abs=1e-15)


def test_an_empty_bin_is_floored_at_the_documented_epsilon() -> None:
    p, q = [50, 50], [100, 0]
    want = (1.0 - 0.5) * math.log(1.0 / 0.5) + (PSI_EPSILON - 0.5) * math.log(PSI_EPSILON / 0.5)
    assert psi(p, q) == pytest.approx(want, abs=1e-12)
    assert PSI_EPSILON == 1e-4
    assert math.isfinite(psi([0, 10], [10, 0]))


def test_psi_refuses_what_has_no_distribution() -> None:
    with pytest.raises(ValueError, match="not all 0"):
        psi([0, 0], [1, 1])
    with pytest.raises(ValueError, match="non-negative"):
        proportions([1, -1])
    with pytest.raises(ValueError, match="expected 2 bins, got 3"):
        psi([1, 1], [1, 1, 1])


def test_sliding_window_counts_the_last_assignments() -> None:
    rng = np.random.default_rng(0)
    window = SlidingWindow(50, 4)
    ref: deque[tuple[int, float]] = deque(maxlen=50)
    for batch in range(40):
        n = int(rng.integers(1, 30)) if batch != 20 else 120  # one batch larger than the window
        labels = rng.integers(0, 4, n).astype(np.int64)
        dist = rng.random(n)
        window.add(labels, dist)
        ref.extend(zip(labels.tolist(), dist.tolist(), strict=True))
        assert len(window) == len(ref)
        assert window.counts.tolist() == np.bincount([c for c, _ in ref], minlength=4).tolist()
        assert window.mean_distance() == pytest.approx(np.mean([d for _, d in ref]), rel=1e-9)


def test_empty_window_has_no_mean() -> None:
    assert math.isnan(SlidingWindow(3, 2).mean_distance())


def test_tracker_reports_psi_once_the_window_holds_enough() -> None:
    tracker = DriftTracker([10, 10], training_mean_distance=2.0, window=100, min_for_psi=4)
    r = tracker.add(np.array([0, 0, 0]), np.array([1.0, 1.0, 4.0]))
    assert (r.assignments, r.psi) == (3, None)
    assert r.distance_ratio == pytest.approx(1.0)
    r = tracker.add(np.array([0]), np.array([2.0]))
    assert r.psi == pytest.approx(psi([10, 10], [4, 0]))
    assert DriftTracker([1, 1], 1.0, window=10).min_for_psi == 10


def test_a_zero_training_distance_gives_no_ratio() -> None:
    r = DriftTracker([1, 1], 0.0, window=5).add(np.array([1]), np.array([0.5]))
    assert r.distance_ratio is None


def test_mean_window_evicts_the_oldest() -> None:
    w = MeanWindow(3)
    assert math.isnan(w.mean())
    assert [w.push(v) for v in (1.0, 2.0, 3.0, 4.0)] == [None, None, None, 1.0]
    assert w.mean() == pytest.approx(3.0)
    for v in range(1000):
        w.push(v * 1e6 + 0.1)
    assert w.mean() == pytest.approx(998e6 + 0.1)


def test_query_drift_ratio() -> None:
    d = QueryDrift(probe_mean=2.0, window=2)
    assert d.add(np.array([2.0])) == pytest.approx(1.0)
    assert d.add(np.array([4.0, 6.0])) == pytest.approx(2.5)
    assert QueryDrift(probe_mean=-0.5, window=4).add(np.array([1.0])) is None


def test_histogram_buckets() -> None:
    ref = np.random.default_rng(2).gamma(2.0, 1.0, 5000)
    b = histogram_buckets(ref)
    assert b == sorted(set(b)) and b[0] > 0
    assert b[-1] == pytest.approx(10 * float(f"{np.quantile(ref, 0.99):.6g}"), rel=1e-5)
    assert histogram_buckets(np.array([-1.0, -0.5])) == [1.0]
