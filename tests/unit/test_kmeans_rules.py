"""Choosing k, the summary's elbow, the distance buckets and the k-means gate."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from knn_contracts.kmeans import ElbowPoint
from knn_serving.build.kmeans_gate import (
    GateFailedError,
    Measured,
    Thresholds,
    check,
    failures,
    inertia_regression,
)
from knn_serving.build.kmeans_select import choose, compact_elbow, distance_summary, parse_range


def point(k: int, silhouette: float, inertia: float = 1.0) -> ElbowPoint:
    return ElbowPoint(k=k, inertia=inertia, silhouette=silhouette, seconds=0.0)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("3", "expected MIN:MAX"),
        ("1:4", "MIN must be at least 2"),
        ("5:4", "MAX 4 is below MIN 5"),
        ("2:x", "two integers"),
        ("2:3:4", "expected MIN:MAX"),
    ],
)
def test_parse_range_names_the_problem(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_range(text)


def test_parse_range() -> None:
    assert parse_range("2:2") == (2, 2)
    assert parse_range("3:10") == (3, 10)


def test_choose_the_best_silhouette_and_the_smaller_k_on_a_tie() -> None:
    assert choose([point(2, 0.5), point(3, 0.7), point(4, 0.6)]).k == 3
    assert choose([point(2, 0.7), point(3, 0.7)]).k == 2
    with pytest.raises(ValueError):
        choose([])


def test_compact_elbow_keeps_ends_and_the_chosen_k() -> None:
    points = [point(k, 0.1, inertia=1000.0 / k) for k in range(2, 200)]
    short = compact_elbow(points, chosen_k=77, keep=40)
    ks = [k for k, _, _ in short]
    assert ks[0] == 2 and ks[-1] == 199 and 77 in ks
    assert len(ks) <= 40 and ks == sorted(ks)
    assert short[0][1] == 500.0 and short[1][1] == float(f"{1000.0 / ks[1]:.4g}")
    assert [k for k, _, _ in compact_elbow(points[:5], 3)] == [2, 3, 4, 5, 6]


def test_distance_buckets_increase_and_cover_the_tail() -> None:
    d = np.random.default_rng(0).gamma(2.0, 1.0, 10_000)
    s = distance_summary(d)
    assert s.buckets == sorted(set(s.buckets)) and s.buckets[0] > 0
    assert s.buckets[-1] >= 10 * np.quantile(d, 0.99) * 0.999
    assert s.mean == pytest.approx(d.mean())
    # Counts per bucket as Prometheus counts them (le), and the rows above the last bound.
    edges = [-np.inf, *s.buckets, np.inf]
    want = [int(((d > lo) & (d <= hi)).sum()) for lo, hi in pairwise(edges)]
    assert s.counts == want and sum(s.counts) == d.shape[0]
    assert distance_summary(np.zeros(5)).buckets[0] > 0  # every row on its centroid


T = Thresholds(min_silhouette=0.5, min_cluster_fraction=0.1, max_inertia_regression=0.1)


def test_gate_passes_a_good_model() -> None:
    check(Measured(0.6, [100, 90, 110], previous_mean=1.0, this_on_previous_mean=1.05), T)


def test_gate_names_every_failure() -> None:
    failed = failures(Measured(0.4, [200, 5, 0], 1.0, 1.5), T)
    assert len(failed) == 3
    assert "silhouette 0.4000 is below --min-silhouette 0.5" in failed[0]
    assert "2 of 3 clusters are empty or hold fewer than 6.8" in failed[1]
    assert "cluster 1: 5 rows, cluster 2: 0 rows" in failed[1]
    assert "+50.0%" in failed[2] and "--max-inertia-regression 0.1" in failed[2]
    with pytest.raises(GateFailedError, match=r"^validation gate failed: silhouette"):
        check(Measured(0.4, [200, 5, 0], 1.0, 1.5), T)


def test_empty_cluster_fails_even_at_fraction_zero() -> None:
    zero = Thresholds(None, 0.0, 0.1)
    assert failures(Measured(0.9, [10, 0], None, None), zero)
    assert not failures(Measured(0.9, [10, 1], None, None), zero)


def test_inertia_regression() -> None:
    assert inertia_regression(2.0, 2.2) == pytest.approx(0.1)
    assert inertia_regression(2.0, 1.0) == pytest.approx(-0.5)
    assert inertia_regression(0.0, 0.0) == 0.0
    assert inertia_regression(0.0, 1.0) == float("inf")
