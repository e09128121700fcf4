"""`knn-serve --http direct` answers byte for byte as uvicorn's ASGI path does: the real
servers side by side, spoken to over raw sockets (keep-alive, pipelining, HTTP/1.0,
100-continue, bodies over the limit, clients that leave mid-body), compared with only
the `date` header left out; then SIGTERM's drain and `--workers 2` under the direct front."""

from __future__ import annotations

import re
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import orjson
import pytest

if TYPE_CHECKING:
    from tests.dataplane import servers as sv
else:
    import servers as sv

DIM, COUNT, MAX_BODY = 8, 400, 4096


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, sv.KnnServe]]:
    tmp = tmp_path_factory.mktemp("front")
    data = np.random.default_rng(5).standard_normal((COUNT, DIM), dtype=np.float32)
    art = sv.build_artifact(tmp, data, "l2", probe_queries=50)
    args = ["--max-body-bytes", str(MAX_BODY), "--live-recall-rate", "0"]
    with (
        sv.serve(art.directory, tmp / "u", args=[*args, "--http", "uvicorn"]) as u,
        sv.serve(art.directory, tmp / "d", args=[*args, "--http", "direct"]) as d,
    ):
        yield {"uvicorn": u, "direct": d}
        for s in (u, d):
            s.child.check_running()
            assert "Traceback" not in s.child.stderr(), s.child.stderr_tail(80)


def exchange(server: sv.KnnServe, chunks: list[bytes], pause: float = 0.05) -> bytes:
    """Send `chunks` on one connection (a pause between them), read until it closes."""
    with socket.create_connection((sv.LOOPBACK, server.port), timeout=10) as s:
        for chunk in chunks:
            s.sendall(chunk)
            time.sleep(pause)
        out = b""
        while data := s.recv(65536):  # every case ends with the server closing
            out += data
    return re.sub(rb"date: [^\r]*\r\n", b"", out)


def post(
    body: bytes, *, extra: bytes = b"", version: bytes = b"1.1", path: bytes = b"/v1/query"
) -> bytes:
    return (
        b"POST " + path + b" HTTP/" + version + b"\r\nhost: x\r\ncontent-type: application/json\r\n"
        + b"content-length: " + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body
    )  # fmt: skip


QUERY = orjson.dumps({"vector": [0.5] * DIM, "k": 3})
BAD = orjson.dumps({"vector": [0.5] * (DIM - 1)})
CLOSE = b"connection: close\r\n"

CASES: dict[str, list[bytes]] = {
    "keep-alive then close": [post(QUERY), post(BAD), post(QUERY, extra=CLOSE)],
    "pipelined": [post(QUERY) + post(BAD) + post(QUERY, extra=CLOSE)],
    "http/1.0": [post(QUERY, version=b"1.0")],
    "expect 100-continue": [
        post(b"", extra=b"expect: 100-continue\r\n" + CLOSE).replace(
            b"content-length: 0", b"content-length: " + str(len(QUERY)).encode()
        ),
        QUERY,
    ],
    "declared over the limit": [post(b"x" * (MAX_BODY + 1), extra=CLOSE)],
    "chunked over the limit": [
        b"POST /v1/query HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        + (b"800\r\n" + b"1" * 0x800 + b"\r\n") * 3
        + b"0\r\n\r\n"
    ],
    "chunked query": [
        b"POST /v1/query?k=2 HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        + b"%x\r\n" % len(QUERY)
        + QUERY
        + b"\r\n0\r\n\r\n"
    ],
    "escaped path goes the ASGI way": [post(QUERY, path=b"/v1/%71uery", extra=CLOSE)],
    "assign on an index": [post(QUERY, path=b"/v1/assign", extra=CLOSE)],
    "get query": [b"GET /v1/query HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"],
    "malformed http": [b"POST /v1/query HTTP/1.1\r\ncontent-length: x\r\n\r\n"],
}


@pytest.mark.parametrize("name", list(CASES))
def test_direct_answers_as_uvicorn(pair: dict[str, sv.KnnServe], name: str) -> None:
    want = exchange(pair["uvicorn"], CASES[name])
    assert want.startswith(b"HTTP/1.1 "), want
    assert exchange(pair["direct"], CASES[name]) == want


def requests_counted(server: sv.KnnServe) -> float:
    return sum(s.value for s in sv.metric_samples(server.metrics_text(), "knn_requests"))


def test_client_leaving_mid_body_is_no_request(pair: dict[str, sv.KnnServe]) -> None:
    for server in pair.values():
        before = requests_counted(server)
        with socket.create_connection((sv.LOOPBACK, server.port), timeout=10) as s:
            s.sendall(post(QUERY)[:-10])
            time.sleep(0.2)
        time.sleep(0.2)
        with server.client() as c:
            r = c.post("/v1/query", content=QUERY, headers={"content-type": "application/json"})
            assert r.status_code == 200, r.text
        assert requests_counted(server) == before + 1


def test_sigterm_drains_a_direct_request(tmp_path: Path) -> None:
    """An in-flight batch on the direct front is answered after SIGTERM; exit 0."""
    rng = np.random.default_rng(3)
    data = rng.standard_normal((5000, 64), dtype=np.float32)
    art = sv.build_artifact(tmp_path, data, "l2", probe_queries=20)
    args = ["--http", "direct", "--batch-threads", "1", "--max-ef", "4096", "--drain-seconds", "15"]
    server = sv.KnnServe(art.directory, tmp_path / "logs", args=args)
    try:
        server.start()
        rows = rng.standard_normal((1024, 64), dtype=np.float32)
        body = rows.astype("<f4").tobytes()
        request = (
            b"POST /v1/query?k=100&ef=4096 HTTP/1.1\r\nhost: x\r\n"
            b"content-type: application/octet-stream\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body
        )  # fmt: skip
        with socket.create_connection((sv.LOOPBACK, server.port), timeout=30) as s:
            s.sendall(request)
            time.sleep(0.2)
            server.child.send_signal(signal.SIGTERM)
            answer = b""
            while chunk := s.recv(1 << 16):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer[:200]
        assert b"connection: close\r\n" in answer
        assert server.child.wait(timeout=15) == 0, server.child.stderr_tail()
    finally:
        server.stop()


def test_two_direct_workers_answer_and_exit_cleanly(tmp_path: Path) -> None:
    data = np.random.default_rng(9).standard_normal((COUNT, DIM), dtype=np.float32)
    art = sv.build_artifact(tmp_path, data, "l2", probe_queries=50)
    server = sv.KnnServe(
        art.directory, tmp_path / "logs", args=["--http", "direct", "--workers", "2"]
    )
    try:
        server.start()
        with server.client() as c:
            for _ in range(20):
                r = c.post("/v1/query", content=QUERY, headers={"content-type": "application/json"})
                assert r.status_code == 200, r.text
        served = [
            s.value
            for s in sv.metric_samples(server.metrics_text(), "knn_requests")
            if s.labels.get("code") == "200"
        ]
        assert sum(served) == 20
        server.child.send_signal(signal.SIGTERM)
        assert server.child.wait(timeout=30) == 0, server.child.stderr_tail()
    finally:
        server.stop()
