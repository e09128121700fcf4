"""Every bad input gets a 4xx with a JSON {"detail": message} that names the problem,
never a 5xx: the real `knn-serve` over HTTP on loopback, with small limits."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest

if TYPE_CHECKING:  # mypy resolves modules from the repository root...
    from tests.dataplane import servers as sv
else:  # ...pytest puts this directory (it has no __init__.py) on sys.path.
    import servers as sv

DIM, COUNT = 16, 600
MAX_K, MAX_EF, MAX_BATCH, MAX_BODY = 100, 300, 8, 65536
TINY = 30  # vectors in the artifact used for k > count
LIMITS = [
    "--max-k", str(MAX_K), "--max-ef", str(MAX_EF),
    "--max-batch", str(MAX_BATCH), "--max-body-bytes", str(MAX_BODY),
]  # fmt: skip

JSON_CT = {"content-type": "application/json"}
BIN_CT = {"content-type": "application/octet-stream"}


def vec(dim: int = DIM, value: float = 0.25) -> list[float]:
    return [value] * dim


def raw_vec(first: str, dim: int = DIM) -> bytes:
    """A JSON vector whose first component is the literal `first`."""
    return ("[" + ",".join([first] + ["0.5"] * (dim - 1)) + "]").encode()


def f32(*rows: list[float]) -> bytes:
    return np.asarray(rows, dtype="<f4").tobytes()


@dataclass(frozen=True)
class Bad:
    """One bad request and what the answer must say."""

    status: int
    says: str  # a substring of the detail that names the problem
    body: bytes | None = None
    json_body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    method: str = "POST"
    path: str = "/v1/query"
    chunked: bool = False

    def send(self, c: httpx.Client) -> httpx.Response:
        data = self.body
        if self.json_body is not None:
            data = json.dumps(self.json_body, allow_nan=True).encode()
        content: bytes | Iterator[bytes] | None = data
        if self.chunked and data is not None:
            # No Content-Length: httpx sends an iterator with Transfer-Encoding: chunked.
            content = iter([data[i : i + 8192] for i in range(0, len(data), 8192)])
        return c.request(
            self.method, self.path, content=content, headers=self.headers, params=self.params
        )


def j(status: int, says: str, doc: Any) -> Bad:
    return Bad(status, says, json_body=doc, headers=JSON_CT)


def raw(status: int, says: str, body: bytes, ct: str | None = "application/json") -> Bad:
    return Bad(status, says, body=body, headers={"content-type": ct} if ct else {})


def binary(status: int, says: str, body: bytes, **params: str) -> Bad:
    return Bad(status, says, body=body, headers=BIN_CT, params=params)


HUGE_BODY = json.dumps({"vector": vec(), "padding": "x" * MAX_BODY}).encode()

CASES: dict[str, Bad] = {
    # dimension
    "dimension-single": j(422, "dimension 15; this index has dimension 16", {"vector": vec(15)}),
    "dimension-batch": j(422, "dimension 17", {"vectors": [vec(17), vec(17)]}),
    "dimension-empty-vector": j(422, "dimension 0", {"vector": []}),
    "ragged-batch": j(422, f"{DIM} numbers per vector", {"vectors": [vec(), vec(DIM - 1)]}),
    # non-finite numbers
    "json-NaN-literal": raw(400, "malformed JSON", b'{"vector":' + raw_vec("NaN") + b"}"),
    "json-Infinity-literal": raw(400, "malformed JSON", b'{"vector":' + raw_vec("Infinity") + b"}"),
    "json-minus-Infinity": raw(
        400, "malformed JSON", b'{"vectors":[' + raw_vec("-Infinity") + b"]}"
    ),
    "json-1e39-overflows-float32": raw(
        422, "out of float32 range", b'{"vector":' + raw_vec("1e39") + b"}"
    ),
    "json-minus-1e39-in-batch": raw(
        422, "out of float32 range", b'{"vectors":[' + raw_vec("-1e39") + b"]}"
    ),
    "json-1e400": raw(400, "infinity", b'{"vector":' + raw_vec("1e400") + b"}"),
    "finite-but-distance-overflows": j(422, "overflow", {"vector": vec(value=3e38)}),
    "binary-NaN": binary(422, "NaN or Inf", f32([math.nan, *vec(DIM - 1)])),
    "binary-Inf": binary(422, "NaN or Inf", f32(vec(), [-math.inf, *vec(DIM - 1)])),
    # booleans among numbers (numpy would read them as 1.0 and 0.0)
    "vector-true-among-floats": j(
        422,
        "'vector' must hold numbers only (found booleans)",
        {"vector": [0.1, True, *vec(DIM - 2)]},
    ),
    "vector-false-last-among-ints": j(
        422,
        "'vector' must hold numbers only (found booleans)",
        {"vector": [1] * (DIM - 1) + [False]},
    ),
    "vectors-false-in-second-row": j(
        422,
        "'vectors' must hold numbers only (found booleans)",
        {"vectors": [vec(), [*vec(DIM - 1), False]]},
    ),
    "vectors-true-in-int-row": j(
        422,
        "'vectors' must hold numbers only (found booleans)",
        {"vectors": [[2, True] * (DIM // 2)]},
    ),
    # k
    "k-zero": j(422, "'k' must be between 1 and", {"vector": vec(), "k": 0}),
    "k-negative": j(422, "'k' must be between 1 and", {"vector": vec(), "k": -3}),
    "k-above-max-k": j(
        422,
        f"'k' must be between 1 and {MAX_K}, got {MAX_K + 1}",
        {"vector": vec(), "k": MAX_K + 1},
    ),
    "k-float": j(422, "'k' must be an integer, got float", {"vector": vec(), "k": 2.5}),
    "k-integral-float": j(422, "'k' must be an integer", {"vector": vec(), "k": 3.0}),
    "k-bool": j(422, "'k' must be an integer, got bool", {"vector": vec(), "k": True}),
    "k-string": j(422, "'k' must be an integer, got str", {"vector": vec(), "k": "5"}),
    "k-null": j(422, "'k' must be an integer", {"vector": vec(), "k": None}),
    "k-list": j(422, "'k' must be an integer", {"vector": vec(), "k": [5]}),
    "k-huge-int": raw(422, "'k'", b'{"vector":' + raw_vec("1") + b',"k":' + b"9" * 30 + b"}"),
    "binary-k-zero": binary(422, "'k' must be between 1 and", f32(vec()), k="0"),
    "binary-k-not-integer": binary(422, "'k' must be an integer", f32(vec()), k="2.5"),
    "binary-k-word": binary(422, "'k' must be an integer", f32(vec()), k="ten"),
    "binary-k-above-max-k": binary(422, f"between 1 and {MAX_K}", f32(vec()), k=str(MAX_K + 1)),
    "binary-k-5000-digits": binary(422, "'k'", f32(vec()), k="9" * 5000),
    # ef
    "ef-below-k": j(422, "'ef' must be between 10 and", {"vector": vec(), "k": 10, "ef": 9}),
    "ef-above-max-ef": j(
        422, f"'ef' must be between 5 and {MAX_EF}", {"vector": vec(), "k": 5, "ef": MAX_EF + 1}
    ),
    "ef-zero": j(422, "'ef' must be between", {"vector": vec(), "k": 1, "ef": 0}),
    "ef-bool": j(422, "'ef' must be an integer, got bool", {"vector": vec(), "ef": False}),
    "ef-string": j(422, "'ef' must be an integer, got str", {"vector": vec(), "ef": "64"}),
    "binary-ef-below-k": binary(422, "'ef' must be between 10", f32(vec()), k="10", ef="3"),
    "binary-ef-above-max": binary(422, f"and {MAX_EF}", f32(vec()), k="10", ef=str(MAX_EF + 1)),
    "binary-ef-word": binary(422, "'ef' must be an integer", f32(vec()), ef="wide"),
    # shape of the document
    "vector-and-vectors": j(
        422, "exactly one of 'vector' or 'vectors'", {"vector": vec(), "vectors": [vec()]}
    ),
    "neither": j(422, "exactly one of 'vector' or 'vectors'", {"k": 5}),
    "empty-object": j(422, "exactly one of 'vector' or 'vectors'", {}),
    "unknown-field": j(422, "unknown field(s): filter", {"vector": vec(), "filter": "x"}),
    "unknown-fields": j(422, "unknown field(s): a, b", {"vector": vec(), "b": 1, "a": 2}),
    "empty-vectors": j(422, "'vectors' must be a non-empty list", {"vectors": []}),
    "vectors-string": j(422, "'vectors' must be a non-empty list", {"vectors": "0.1,0.2"}),
    "vectors-object": j(422, "'vectors' must be a non-empty list", {"vectors": {"a": vec()}}),
    "vectors-number": j(422, "'vectors' must be a non-empty list", {"vectors": 3}),
    "vectors-flat": j(422, f"{DIM} numbers per vector", {"vectors": [0.5] * MAX_BATCH}),
    "vectors-flat-with-a-boolean": j(422, f"{DIM} numbers per vector", {"vectors": [0.5, True]}),
    "vectors-null-row": j(422, f"{DIM} numbers per vector", {"vectors": [None]}),
    "vector-not-a-list": j(422, "'vector' must be a list", {"vector": 0.5}),
    "vector-of-strings": j(422, "'vector' must be a list", {"vector": ["a"] * DIM}),
    "vector-of-objects": j(422, "'vector' must be a list", {"vector": [{}] * DIM}),
    "vector-nested": j(422, "'vector' must be a list", {"vector": [vec()]}),
    "vectors-nested-too-deep": j(422, f"{DIM} numbers per vector", {"vectors": [[vec()]]}),
    "deep-nesting-1000": raw(
        422, "must be a list", b'{"vectors":' + b"[" * 1000 + b"]" * 1000 + b"}"
    ),
    "deep-nesting-30000": raw(400, "depth", b"[" * 30_000 + b"]" * 30_000),
    "body-is-a-list": j(422, "body must be a JSON object", [vec()]),
    "body-is-a-string": j(422, "body must be a JSON object", "vector"),
    "body-is-null": raw(422, "body must be a JSON object", b"null"),
    # size limits
    "batch-over-max-batch": j(
        413,
        f"batch of {MAX_BATCH + 1} vectors exceeds the limit of {MAX_BATCH}",
        {"vectors": [vec()] * (MAX_BATCH + 1)},
    ),
    "binary-batch-over-max-batch": binary(
        413, f"batch of {MAX_BATCH + 1} vectors", f32(*[vec()] * (MAX_BATCH + 1))
    ),
    "body-over-limit-content-length": raw(413, f"exceeds the limit of {MAX_BODY}", HUGE_BODY),
    "body-over-limit-chunked": Bad(
        413, f"exceeds the limit of {MAX_BODY}", body=HUGE_BODY, headers=JSON_CT, chunked=True
    ),
    "binary-over-limit-chunked": Bad(
        413,
        f"exceeds the limit of {MAX_BODY}",
        body=b"\0" * (MAX_BODY + 4 * DIM),
        headers=BIN_CT,
        chunked=True,
    ),
    # syntax and media types
    "malformed-json": raw(400, "malformed JSON", b'{"vector": [0.1, 0.2'),
    "empty-json-body": raw(400, "malformed JSON", b""),
    "invalid-utf8": raw(400, "malformed JSON", b'{"vector": "\xff\xfe"}'),
    "trailing-garbage": raw(400, "malformed JSON", b'{"vector": [1]} x'),
    "single-quotes": raw(400, "malformed JSON", b"{'vector': [1]}"),
    "wrong-content-type": raw(415, "unsupported content type 'text/plain'", b"{}", "text/plain"),
    "form-content-type": raw(
        415, "application/x-www-form-urlencoded", b"k=1", "application/x-www-form-urlencoded"
    ),
    "missing-content-type": raw(415, "unsupported content type '(none)'", b'{"vector":[1]}', None),
    "binary-not-whole-rows": binary(422, "not a whole number of 64-byte float32 rows", b"\0" * 63),
    "binary-one-and-a-bit-rows": binary(422, "130 bytes", b"\0" * 130),
    "binary-empty": binary(422, "binary body of 0 bytes", b""),
    # routing
    "get-query": Bad(405, "Method Not Allowed", method="GET"),
    "put-query": Bad(405, "Method Not Allowed", method="PUT", body=b"{}", headers=JSON_CT),
    "delete-query": Bad(405, "Method Not Allowed", method="DELETE"),
    "unknown-path": Bad(404, "Not Found", method="GET", path="/v1/nope"),
    "unknown-post-path": Bad(404, "Not Found", path="/v2/query", body=b"{}", headers=JSON_CT),
    "post-info": Bad(405, "Method Not Allowed", path="/v1/info", body=b"{}", headers=JSON_CT),
}


@dataclass(frozen=True)
class Limited:
    server: sv.KnnServe
    client: httpx.Client


@pytest.fixture(scope="module", params=sv.HTTP_FRONTS)
def limited(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Limited]:
    tmp = tmp_path_factory.mktemp("bad-input")
    data = np.random.default_rng(11).standard_normal((COUNT, DIM), dtype=np.float32)
    art = sv.build_artifact(tmp, data, "l2", probe_queries=100)
    args = [*LIMITS, *sv.front_args(request.param)]
    with sv.serve(art.directory, tmp / "logs", args=args) as server, server.client() as c:
        yield Limited(server, c)


def assert_detail(r: httpx.Response, status: int, says: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].split(";")[0] == "application/json", r.headers
    doc = r.json()
    assert set(doc) == {"detail"}, doc
    assert isinstance(doc["detail"], str)
    assert says in doc["detail"], doc["detail"]


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_a_4xx_naming_the_problem(limited: Limited, name: str) -> None:
    case = CASES[name]
    assert_detail(case.send(limited.client), case.status, case.says)


def test_server_still_answers_after_bad_input(limited: Limited) -> None:
    for case in CASES.values():
        case.send(limited.client)
    r = limited.client.post("/v1/query", json={"vector": vec(), "k": MAX_K, "ef": MAX_EF})
    assert r.status_code == 200, r.text
    assert len(r.json()["ids"]) == MAX_K
    limited.server.child.check_running()
    assert "Traceback" not in limited.server.child.stderr()


def test_limits_themselves_are_accepted(limited: Limited) -> None:
    """The boundary values are valid: k = --max-k, ef = --max-ef, a full batch, a body of
    exactly --max-body-bytes."""
    r = limited.client.post("/v1/query", json={"vectors": [vec()] * MAX_BATCH, "k": 1})
    assert r.status_code == 200, r.text
    r = limited.client.post(
        "/v1/query", params={"k": "1"}, content=f32(*[vec()] * MAX_BATCH), headers=BIN_CT
    )
    assert r.status_code == 200, r.text
    doc = json.dumps({"vector": vec(), "k": 1}).encode()
    body = doc + b" " * (MAX_BODY - len(doc))
    assert len(body) == MAX_BODY
    r = limited.client.post("/v1/query", content=body, headers=JSON_CT)
    assert r.status_code == 200, r.text
    r = limited.client.post("/v1/query", content=body + b" ", headers=JSON_CT)
    assert r.status_code == 413, r.text


def test_media_type_parameters_and_case(limited: Limited) -> None:
    body = json.dumps({"vector": vec(), "k": 2}).encode()
    for ct in ("application/json; charset=utf-8", "Application/JSON"):
        r = limited.client.post("/v1/query", content=body, headers={"content-type": ct})
        assert r.status_code == 200, (ct, r.text)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """An index smaller than the default --max-k, for k > count."""
    tmp = tmp_path_factory.mktemp("tiny")
    data = np.random.default_rng(12).standard_normal((TINY, DIM), dtype=np.float32)
    art = sv.build_artifact(tmp, data, "cosine", probe_queries=10, k=5)
    with sv.serve(art.directory, tmp / "logs") as server, server.client() as c:
        yield c


def test_k_above_count(tiny: httpx.Client) -> None:
    r = tiny.post("/v1/query", json={"vector": vec(), "k": TINY + 1})
    assert_detail(r, 422, f"'k' must be between 1 and {TINY}, got {TINY + 1}")
    r = tiny.post("/v1/query", params={"k": str(TINY + 1)}, content=f32(vec()), headers=BIN_CT)
    assert_detail(r, 422, f"between 1 and {TINY}")


def test_k_equal_to_count_and_a_zero_vector(tiny: httpx.Client) -> None:
    """Edge cases that are not errors: every vector at once; a zero vector under cosine."""
    r = tiny.post("/v1/query", json={"vector": vec(), "k": TINY})
    assert r.status_code == 200, r.text
    assert sorted(r.json()["ids"]) == list(range(TINY))
    r = tiny.post("/v1/query", json={"vector": vec(value=0.0), "k": 3})
    assert r.status_code in (200, 422), r.text


def test_counted_by_status(limited: Limited, tmp_path: Path) -> None:
    """Each refused /v1/query is counted under its own code; routing errors are not
    query requests."""

    def counts() -> dict[str, float]:
        out: dict[str, float] = {}
        for s in sv.metric_samples(limited.server.metrics_text(), "knn_requests"):
            if s.name == "knn_requests_total":
                out[s.labels["code"]] = out.get(s.labels["code"], 0.0) + s.value
        return out

    before = counts()
    expected: dict[str, int] = {}
    for case in CASES.values():
        if case.path == "/v1/query" and case.method == "POST":
            expected[str(case.status)] = expected.get(str(case.status), 0) + 1
            case.send(limited.client)
    after = counts()
    for code, n in expected.items():
        assert after.get(code, 0.0) - before.get(code, 0.0) == n, (code, before, after)
    assert not any(code.startswith("5") for code in after), after
