"""Fuzzing the real `knn-serve` over HTTP: no input, valid or not, gets a 5xx.

Two fuzzers, both bounded: schemathesis generating requests (positive and negative)
from the server's own /openapi.json for every operation, and a seeded fuzzer of raw
bodies (random bytes, truncated and mutated JSON, deep nesting, huge numbers), sent to
an index's /v1/query and to a k-means model's /v1/assign (its schemathesis run is in
test_kmeans_serve.py).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

if TYPE_CHECKING:  # mypy resolves modules from the repository root...
    from tests.dataplane import servers as sv
else:  # ...pytest puts this directory (it has no __init__.py) on sys.path.
    import servers as sv

DIM, COUNT = 4, 300
MAX_BODY, MAX_BATCH, MAX_EF = 1 << 20, 64, 500
EXAMPLES_PER_OPERATION = 150
RAW_BODIES, RAW_SECONDS = 2000, 120.0


@pytest.fixture(scope="module", params=sv.HTTP_FRONTS)
def fuzz_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[sv.KnnServe]:
    tmp = tmp_path_factory.mktemp("fuzz")
    data = np.random.default_rng(41).standard_normal((COUNT, DIM), dtype=np.float32)
    art = sv.build_artifact(tmp, data, "cosine", probe_queries=50, k=5)
    args = ["--max-body-bytes", str(MAX_BODY), "--max-batch", str(MAX_BATCH)]
    args += ["--max-ef", str(MAX_EF), *sv.front_args(request.param)]
    with sv.serve(art.directory, tmp / "logs", args=args) as server:
        yield server
        server.child.check_running()
        assert "Traceback" not in server.child.stderr(), server.child.stderr_tail(80)


@pytest.fixture(scope="module", params=sv.HTTP_FRONTS)
def fuzz_model(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[sv.ModelServe]:
    tmp = tmp_path_factory.mktemp("fuzz-model")
    data = np.random.default_rng(42).standard_normal((COUNT, DIM), dtype=np.float32)
    model = sv.build_kmeans_artifact(tmp, data, clusters=3, probe_points=50)
    args = ["--max-body-bytes", str(MAX_BODY), "--max-batch", str(MAX_BATCH)]
    args += sv.front_args(request.param)
    with sv.serve_model(model.directory, tmp / "logs", args=args) as server:
        yield server
        server.child.check_running()
        assert "Traceback" not in server.child.stderr(), server.child.stderr_tail(80)


POSITIVE, NEGATIVE = schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE
# Every operation of /openapi.json (test_the_schema_lists_every_route keeps this complete).
# The GET routes take no parameters, so there is nothing negative to generate for them.
# "sized": the query schema narrowed by the test to this index's dimension and limits, so
# that valid-looking cases reach the search itself (the served schema cannot know them).
OPERATIONS = [
    ("GET", "/healthz", POSITIVE, False),
    ("GET", "/readyz", POSITIVE, False),
    ("GET", "/metrics", POSITIVE, False),
    ("GET", "/v1/info", POSITIVE, False),
    ("POST", "/v1/query", POSITIVE, False),
    ("POST", "/v1/query", NEGATIVE, False),
    ("POST", "/v1/query", POSITIVE, True),
]


def sized(doc: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document with /v1/query's JSON body fitted to the fuzzed index."""
    body = doc["paths"]["/v1/query"]["post"]["requestBody"]["content"]["application/json"]
    single, batch = body["schema"]["oneOf"]
    for variant in (single, batch):
        variant["properties"]["k"]["maximum"] = COUNT
        variant["properties"]["ef"]["maximum"] = MAX_EF
    single["properties"]["vector"].update(minItems=DIM, maxItems=DIM)
    batch["properties"]["vectors"].update(minItems=1, maxItems=MAX_BATCH)
    batch["properties"]["vectors"]["items"].update(minItems=DIM, maxItems=DIM)
    return doc


@pytest.mark.parametrize(
    ("method", "path", "mode", "fit"),
    OPERATIONS,
    ids=[f"{m} {p} {g.value}{' sized' if f else ''}" for m, p, g, f in OPERATIONS],
)
def test_schemathesis_finds_no_server_error(
    fuzz_server: sv.KnnServe,
    method: str,
    path: str,
    mode: schemathesis.GenerationMode,
    fit: bool,
) -> None:
    """Cases schemathesis generates from the live /openapi.json, valid (positive) and
    invalid (negative): none gets a status >= 500.

    Hypothesis drives `operation.as_strategy` directly: schemathesis' own pytest
    integration (`from_fixture(...).parametrize()`) fails on pytest 9 (it reads
    `node._nodeid`)."""
    with fuzz_server.client() as c:
        doc = c.get("/openapi.json").json()
    api = schemathesis.openapi.from_dict(sized(doc) if fit else doc)
    operation = api[path][method]
    seen: dict[int, int] = {}

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,  # nothing written into the source tree
        derandomize=True,  # the same examples on every run
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def no_server_error(case: schemathesis.Case[Any]) -> None:
        response = case.call(base_url=fuzz_server.url, timeout=30)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path} {case.query} {case.headers} "
            f"{case.body!r:.300} -> {response.status_code}: {response.text[:500]}"
        )

    no_server_error()
    assert sum(seen.values()) > 0, "no case was generated"
    if fit:
        assert seen.get(200, 0) > 0, f"the sized schema should reach the search: {seen}"


def test_the_schema_lists_every_route(fuzz_server: sv.KnnServe) -> None:
    with fuzz_server.client() as c:
        doc = c.get("/openapi.json").json()
    assert {
        "/healthz": {"get"},
        "/readyz": {"get"},
        "/metrics": {"get"},
        "/v1/info": {"get"},
        "/v1/query": {"post"},
        "/v1/assign": {"post"},  # answered by k-means model servers (404 here)
    } == {path: set(ops) for path, ops in doc["paths"].items()}


# --- raw bodies ---------------------------------------------------------------------------------


def _valid(rng: random.Random) -> dict[str, Any]:
    doc: dict[str, Any] = {"k": rng.randint(1, 10)}
    if rng.random() < 0.5:
        doc["vector"] = [rng.uniform(-2, 2) for _ in range(DIM)]
    else:
        doc["vectors"] = [
            [rng.uniform(-2, 2) for _ in range(DIM)] for _ in range(rng.randint(1, 5))
        ]
    return doc


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.randint(-(2**70), 2**70)
    if kind == 3:
        return rng.choice([0.0, -0.0, 1e-320, 3.4e38, -3.5e38, 1e308, rng.uniform(-1e6, 1e6)])
    if kind == 4:
        return "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(rng.randrange(8)))
    if kind == 5:
        return rng.choice(["vector", "vectors", "k", "ef", "NaN", "Infinity"])
    if kind == 6:
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(DIM + 2))]
    if kind == 7:
        keys = ["vector", "vectors", "k", "ef", "x"]
        return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randrange(4))}
    return [[_random_json(rng, depth + 1) for _ in range(DIM)] for _ in range(rng.randrange(3))]


def _random_bytes(rng: random.Random) -> bytes:
    return rng.randbytes(rng.randrange(0, 2048))


def _truncated(rng: random.Random) -> bytes:
    body = json.dumps(_valid(rng)).encode()
    return body[: rng.randrange(len(body))]


def _mutated(rng: random.Random) -> bytes:
    body = bytearray(json.dumps(_valid(rng)).encode())
    for _ in range(rng.randint(1, 4)):
        body[rng.randrange(len(body))] = rng.randrange(256)
    return bytes(body)


def _deep(rng: random.Random) -> bytes:
    depth = rng.choice([2, 3, 64, 512, 1024, 1025, 5000, 100_000])
    inner = b"[" * depth + rng.choice([b"", b"1", b"1.5", b"{}"]) + b"]" * depth
    wrap = rng.choice([b"%s", b'{"vectors":%s}', b'{"vector":%s}', b'{"vector":[1,2,3,%s]}'])
    return wrap.replace(b"%s", inner)


def _huge_numbers(rng: random.Random) -> bytes:
    number = rng.choice(
        [
            "1e39",
            "-1e39",
            "1e309",
            "-1e400",
            "9" * rng.randrange(20, 5000),
            "1" + "0" * 400 + ".5",
            "4.9e-325",
            "3.4028235e38",
            "3.4028236e38",
            "-0",
        ]
    )
    field = rng.choice(["vector", "k", "ef", "vectors"])
    if field == "vector":
        return ('{"vector":[' + ",".join([number] * DIM) + "]}").encode()
    if field == "vectors":
        return ('{"vectors":[[' + ",".join([number] * DIM) + "]]}").encode()
    return ('{"vector":[1,2,3,4],"' + field + '":' + number + "}").encode()


def _random_doc(rng: random.Random) -> bytes:
    return json.dumps(_random_json(rng)).encode()


def _binary(rng: random.Random) -> bytes:
    n = rng.choice([0, 1, 3, 4 * DIM - 1, 4 * DIM, 8 * DIM, 4 * DIM * 65])
    arr = np.frombuffer(rng.randbytes(n - n % 4), dtype="<f4").copy()
    if arr.size and rng.random() < 0.5:
        arr[rng.randrange(arr.size)] = rng.choice([np.nan, np.inf, -np.inf, 3e38, 0.0])
    return arr.tobytes() + rng.randbytes(n % 4)


GENERATORS: list[Callable[[random.Random], bytes]] = [
    _random_bytes,
    _truncated,
    _mutated,
    _deep,
    _huge_numbers,
    _random_doc,
    _binary,
]
CONTENT_TYPES = [
    "application/json",
    "application/json",
    "application/octet-stream",
    "application/octet-stream",
    "application/x-float32",
    "application/json; charset=latin-1",
    "text/plain",
    "",
    None,
]
QUERY_VALUES = ["1", "5", "0", "-1", "300", "1e3", "", "x", "9" * 50, "٣", "5.0", "true"]


def test_raw_bodies_never_get_a_5xx(fuzz_server: sv.KnnServe) -> None:
    raw_fuzz(fuzz_server, "/v1/query")


def test_raw_bodies_never_get_a_5xx_from_a_model(fuzz_model: sv.ModelServe) -> None:
    raw_fuzz(fuzz_model, "/v1/assign")


def raw_fuzz(fuzz_server: sv.KnnServe, route: str) -> None:
    rng = random.Random(20240601)
    deadline = time.monotonic() + RAW_SECONDS
    statuses: dict[int, int] = {}
    with fuzz_server.client() as c:
        for i in range(RAW_BODIES):
            assert time.monotonic() < deadline, f"only {i} bodies within {RAW_SECONDS}s"
            body = rng.choice(GENERATORS)(rng)
            ct = rng.choice(CONTENT_TYPES)
            headers = {} if ct is None else {"content-type": ct}
            params = {name: rng.choice(QUERY_VALUES) for name in ("k", "ef") if rng.random() < 0.4}
            r = c.post(route, content=body, headers=headers, params=params)
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            assert r.status_code < 500, (body[:300], ct, params, r.status_code, r.text[:300])
            assert r.headers["content-type"] == "application/json"
            doc = r.json()
            if r.status_code >= 400:
                assert set(doc) == {"detail"} and doc["detail"], doc
    # The fuzzer reached both answers and several kinds of refusal.
    assert statuses.get(200, 0) > 0 and len(statuses) >= 4, statuses
    r = httpx.get(f"{fuzz_server.url}/readyz", trust_env=False)
    assert r.status_code == 200
