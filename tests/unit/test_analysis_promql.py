"""PromQL rendering: the exact text of every query the analysis runs. (A real
Prometheus parses and evaluates each of them in tests/dataplane.)"""

from __future__ import annotations

from datetime import timedelta

import pytest
from knn_operator.analysis import promql
from knn_operator.analysis.promql import Revision
from knn_operator.analysis.window import (
    parse_duration,
    probe_window,
    promql_duration,
    rate_window,
)

CANARY = Revision("shop", "products", "v2")
STABLE = Revision("shop", "products", "v1")
C = 'namespace="shop",index="products",version="v2"'
S = 'namespace="shop",index="products",version="v1"'


def test_matchers_escape_label_values() -> None:
    rev = Revision('a"b', "c\\d", "e\nf")
    assert rev.matchers() == '{namespace="a\\"b",index="c\\\\d",version="e\\nf"}'
    assert rev.matchers('code="200"') == (
        '{namespace="a\\"b",index="c\\\\d",version="e\\nf",code="200"}'
    )


def test_p95_seconds_of_live_and_probe() -> None:
    assert promql.p95_seconds(CANARY, "30s") == (
        "histogram_quantile(0.95, sum by (le) "
        f'(rate(knn_query_duration_seconds_bucket{{{C},source!="probe"}}[30s])))'
    )
    assert promql.p95_seconds(CANARY, "2m", promql.PROBE) == (
        "histogram_quantile(0.95, sum by (le) "
        f'(rate(knn_query_duration_seconds_bucket{{{C},source="probe"}}[2m])))'
    )


def test_latency_falls_back_to_the_probe_replay_below_the_traffic_floor() -> None:
    live = promql.p95_seconds(CANARY, "30s")
    probe = promql.p95_seconds(CANARY, "120s", promql.PROBE)
    rate = f'sum(rate(knn_query_duration_seconds_count{{{C},source!="probe"}}[30s]))'
    assert promql.latency_p95_ms(CANARY, "30s", "120s", 2.5) == (
        f"1000 * (({live} and on() ({rate} >= 2.5)) or {probe})"
    )


def test_latency_ratio_compares_like_with_like() -> None:
    q = promql.latency_ratio(CANARY, STABLE, "30s", "120s", 1.0)
    live = f"{promql.p95_seconds(CANARY, '30s')} / {promql.p95_seconds(STABLE, '30s')}"
    probe = (
        f"{promql.p95_seconds(CANARY, '120s', promql.PROBE)} / "
        f"{promql.p95_seconds(STABLE, '120s', promql.PROBE)}"
    )
    rc = promql.request_rate(CANARY, "30s")
    rs = promql.request_rate(STABLE, "30s")
    assert q == f"({live} and on() ({rc} >= 1) and on() ({rs} >= 1)) or ({probe})"


def test_error_rate_counts_5xx_only_and_zero_without_5xx_series() -> None:
    assert promql.error_rate(CANARY, "1m") == (
        f'(sum(rate(knn_requests_total{{{C},code=~"5.."}}[1m])) or on() vector(0)) '
        f"/ sum(rate(knn_requests_total{{{C}}}[1m]))"
    )


def test_recall_queries() -> None:
    assert promql.probe_recall(CANARY) == f"avg(knn_recall_ratio{{{C}}})"
    assert promql.live_recall(CANARY, "45s") == (
        f"sum(rate(knn_live_recall_found_total{{{C}}}[45s])) "
        f"/ sum(rate(knn_live_recall_expected_total{{{C}}}[45s]))"
    )
    assert promql.recall_drop(CANARY, STABLE) == (
        f"avg(knn_recall_ratio{{{S}}}) - avg(knn_recall_ratio{{{C}}})"
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("2m", 120), ("1h30m", 5400), ("500ms", 0.5), ("1m30s", 90)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "30", "s", "1d", "30s ", "-1s", "1.5s"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_windows_hold_four_scrapes_and_two_replays() -> None:
    s = timedelta(seconds=1)
    assert rate_window(30 * s, 15 * s) == 60 * s  # widened to 4 scrapes
    assert rate_window(30 * s, 5 * s) == 30 * s  # the interval already holds 6
    assert probe_window(60 * s, 60 * s) == 120 * s
    assert probe_window(300 * s, 60 * s) == 300 * s
    assert promql_duration(timedelta(milliseconds=200)) == "1s"
    assert promql_duration(90 * s) == "90s"


def test_custom_queries_get_the_rollouts_names() -> None:
    from knn_operator.analysis.promql import Revision, template

    canary, stable = Revision("shop", "products", "v1-bbbbb"), Revision("shop", "products", "v1-a")
    q = template(
        'sum(rate(my_hits{namespace="{{namespace}}",version="{{revision}}"}[1m]))'
        " / sum(rate(my_all{ {{canary}} }[1m])) - {{stableRevision}}",
        canary,
        stable,
    )
    assert q == (
        'sum(rate(my_hits{namespace="shop",version="v1-bbbbb"}[1m]))'
        ' / sum(rate(my_all{ namespace="shop",index="products",version="v1-bbbbb" }[1m])) - v1-a'
    )
