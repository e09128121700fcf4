"""Prometheus /api/v1/query answers → Value, NoData or QueryError (pure parsing; the
same code against a real Prometheus is in tests/dataplane/test_analysis_prometheus.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from knn_operator.analysis import NoData, QueryError, Value
from knn_operator.analysis.prometheus import parse_response


def ok(kind: str, result: Any) -> bytes:
    return json.dumps(
        {"status": "success", "data": {"resultType": kind, "result": result}}
    ).encode()


def series(value: str, **labels: str) -> dict[str, Any]:
    return {"metric": labels, "value": [1700000000.5, value]}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (ok("vector", [series("0.25")]), Value(0.25)),
        (ok("vector", [series("0")]), Value(0.0)),  # zero is a value, not no data
        (ok("scalar", [1700000000.5, "3"]), Value(3.0)),
        (ok("vector", []), NoData("no series")),
        (ok("vector", [series("NaN")]), NoData("NaN")),
        (ok("vector", [series("+Inf")]), NoData("+Inf")),
        (ok("vector", [series("-Inf")]), NoData("-Inf")),
        (ok("scalar", [1.0, "NaN"]), NoData("NaN")),
    ],
)
def test_values_and_no_data(body: bytes, expected: object) -> None:
    assert parse_response(200, body) == expected


def test_several_series_is_an_error_that_says_aggregate() -> None:
    body = ok("vector", [series("1", pod=f"p{i}") for i in range(5)])
    r = parse_response(200, body)
    assert isinstance(r, QueryError)
    assert r.message.startswith('5 series ({pod="p0"}, {pod="p1"}, {pod="p2"}, …)')
    assert "aggregate the query" in r.message


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (
            400,
            b'{"status":"error","errorType":"bad_data","error":"parse error at char 4"}',
            "HTTP 400: Prometheus bad_data error: parse error at char 4",
        ),
        (
            503,
            b'{"status":"error","errorType":"timeout","error":"query timed out"}',
            "HTTP 503: Prometheus timeout error: query timed out",
        ),
        (401, b"Unauthorized\n", "HTTP 401 (check the credentials): not a Prometheus API answer"),
        (200, b"<html>proxy</html>", "HTTP 200: not a Prometheus API answer: '<html>proxy</html>'"),
        (200, ok("matrix", []), "a matrix result; the query must return an instant vector"),
        (200, ok("string", [1.0, "x"]), "a string result"),
        (200, ok("vector", [{"metric": {}, "value": [1.0, "abc"]}]), "unreadable value 'abc'"),
        (200, ok("vector", [{"metric": {}}]), "unreadable sample None"),
        (200, b'{"status":"success"}', "Prometheus answer has no data"),
    ],
)
def test_errors(status: int, body: bytes, message: str) -> None:
    r = parse_response(status, body)
    assert isinstance(r, QueryError), r
    assert message in r.message
