"""The rollout analysis against a real Prometheus scraping two real `knn-serve`s.

A "stable" serves at a high efSearch and a "canary" at efSearch 16, on a dataset
where that really lowers recall (test_recall_bias.py: clustered, 20k x 64). Every
number the analysis reads is checked against something it did not produce:
recall against a float64 brute force of fresh queries answered over HTTP, p95
against the client's own timing of the same requests. Queries go through the
analysis' provider (knn_operator.analysis.prometheus) and checks (checks.py,
PromQL from promql.py), judged by assess.judge.

Needs Debian's `prometheus` package; without it the tests fail, they do not skip.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import http.client
import ipaddress
import json
import socket
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import numpy as np
import numpy.typing as npt
import pytest
from aiohttp import web
from knn_contracts import metrics as mnames
from knn_contracts import rollout as names
from knn_devtools.synthetic import clustered
from knn_operator.analysis import (
    Check,
    CheckResult,
    NoData,
    Prometheus,
    QueryError,
    Revision,
    Sample,
    Value,
    checks_for,
    judge,
    measure,
    promql,
    resolve,
)
from knn_operator.models.knnindex import Analysis, PrometheusProvider

if TYPE_CHECKING:
    from tests.dataplane import servers as sv
    from tests.dataplane.datasets import brute_force
else:
    import servers as sv
    from datasets import brute_force

pytestmark = pytest.mark.prometheus

N, DIM, PROBES, NEW_QUERIES, K = 20_000, 64, 1_000, 1_000, 10
STABLE_EF, CANARY_EF = 128, 16
INDEX, NAMESPACE = "products", "shop"
TOLERANCE = 0.03  # probe recall vs new-query recall; sampling error ~0.01 at 1,000 each
LOAD_SECONDS, LOAD_MAX_REQUESTS = 4.0, 3_000
# The load searches wide (a few ms each), so the search, which the server times,
# dominates the HTTP stack around it, which only the client sees.
LOAD_EF = 2000
PROBE_INTERVAL = 5
WINDOW = "15s"  # holds the whole load (and the two scrapes after it) at 1s scrapes
T = TypeVar("T")


def run(coro: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await coro()

    return asyncio.run(main())


def ask(url: str, promql: str, **kw: Any) -> Sample:
    """One query through the analysis' provider."""

    async def go() -> Sample:
        async with Prometheus(url, timeout=kw.pop("timeout", 10.0), **kw) as p:
            return await p.query(promql)

    return run(go)


def measured(url: str, checks: Sequence[Check]) -> list[CheckResult]:
    async def go() -> list[CheckResult]:
        async with Prometheus(url, timeout=10.0) as p:
            return await measure(p, checks)

    return run(go)


def spec(**thresholds: float) -> Analysis:
    return Analysis.model_validate(
        {
            "prometheus": {"address": "http://unused:9090"},
            "interval": WINDOW,
            "scrapeInterval": "1s",
            "thresholds": thresholds,
        }
    )


@dataclass(frozen=True)
class Stack:
    stable_rev: Revision
    canary_rev: Revision
    prom: sv.Prometheus
    truth: dict[str, float]  # new-query recall by brute force, "stable" and "canary"
    live_recall: dict[str, Sample]  # from Prometheus, after the ground truth's queries
    client_ms: npt.NDArray[np.float64]  # client-side latency of the canary's load
    after_load: dict[str, Sample]  # queried right after the load


def _load(server: sv.KnnServe) -> npt.NDArray[np.float64]:
    """Single queries of fresh vectors on one keep-alive connection, each timed by the
    client (stdlib http.client: its own overhead is a few µs, httpx's is ~1 ms)."""
    queries = clustered(LOAD_MAX_REQUESTS, DIM, seed=11, sample_seed=77)
    bodies = [json.dumps({"vector": q.tolist(), "k": K, "ef": LOAD_EF}).encode() for q in queries]
    headers = {"Content-Type": "application/json"}
    out: list[float] = []
    conn = http.client.HTTPConnection(sv.LOOPBACK, server.port, timeout=10)
    deadline = time.monotonic() + LOAD_SECONDS
    try:
        for body in bodies:
            if time.monotonic() > deadline:
                break
            t0 = time.perf_counter()
            conn.request("POST", "/v1/query", body, headers)
            r = conn.getresponse()
            payload = r.read()
            out.append(1000 * (time.perf_counter() - t0))
            assert r.status == 200, payload
    finally:
        conn.close()
    return np.asarray(out)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("analysis")
    data = clustered(N, DIM, seed=11)
    built = {
        v: sv.build_artifact(
            tmp, data, "cosine", version=v, ef_search=CANARY_EF, probe_queries=PROBES, k=K,
            min_recall=0.5,
        )
        for v in ("stable-1", "canary-2")
    }  # fmt: skip
    # Replays every 5 s: often enough for two in every window, rare enough not to
    # crowd the load's latency on a 2-core machine.
    args = [
        "--probe-interval",
        str(PROBE_INTERVAL),
        "--live-recall-rate",
        "0.5",
        "--live-recall-cpu",
        "0.5",
    ]
    with (
        sv.serve(built["stable-1"].directory, tmp / "logs-s", index_name=INDEX,
                 namespace=NAMESPACE, args=[*args, "--ef-search", str(STABLE_EF)]) as stable,
        sv.serve(built["canary-2"].directory, tmp / "logs-c", index_name=INDEX,
                 namespace=NAMESPACE, args=[*args, "--ef-search", str(CANARY_EF)]) as canary,
        sv.prometheus(tmp / "prom", [stable.address, canary.address]) as prom,
    ):  # fmt: skip
        stable_rev = Revision(NAMESPACE, INDEX, "stable-1")
        canary_rev = Revision(NAMESPACE, INDEX, "canary-2")
        prom.wait_for(f"count({mnames.RECALL})", lambda r: prom_value(r) == 2.0)
        # Ground truth first: its batches are the only live traffic live recall samples.
        truth = {
            "stable": _new_query_recall(stable, data),
            "canary": _new_query_recall(canary, data),
        }
        live = {
            "stable": _live_recall(prom, stable_rev),
            "canary": _live_recall(prom, canary_rev),
        }
        time.sleep(16)  # the batches leave the 15 s window before the timed load
        client_ms = _load(canary)
        time.sleep(2.5)  # two scrapes after the load
        after = {
            "canary-latency": ask(prom.url, promql.latency_p95_ms(canary_rev, WINDOW, WINDOW, 1.0)),
            "canary-live-p95": ask(prom.url, promql.p95_seconds(canary_rev, WINDOW)),
            "stable-latency": ask(prom.url, promql.latency_p95_ms(stable_rev, WINDOW, WINDOW, 1.0)),
            "stable-live-p95": ask(prom.url, promql.p95_seconds(stable_rev, WINDOW)),
            "canary-errors": ask(prom.url, promql.error_rate(canary_rev, WINDOW)),
            "stable-errors": ask(prom.url, promql.error_rate(stable_rev, WINDOW)),
        }
        yield Stack(stable_rev, canary_rev, prom, truth, live, client_ms, after)
        code = prom.stop()
        assert code == 0, prom.child.stderr_tail()


def prom_value(result: list[dict[str, Any]]) -> float | None:
    return float(result[0]["value"][1]) if len(result) == 1 else None


def value(sample: Sample) -> float:
    assert isinstance(sample, Value), sample
    return sample.value


# --- recall against an independent ground truth ---------------------------------------------


def _new_query_recall(server: sv.KnnServe, data: npt.NDArray[np.float32]) -> float:
    """Recall@k of fresh queries (never seen by the builder) answered over HTTP,
    judged against a float64 brute force written in the tests."""
    queries = clustered(NEW_QUERIES, DIM, seed=11, sample_seed=2024)
    truth = np.concatenate(
        [brute_force(data, queries[i : i + 250], K, "cosine") for i in range(0, NEW_QUERIES, 250)]
    )
    rows: list[list[int]] = []
    with server.client(timeout=120) as c:
        for i in range(0, NEW_QUERIES, 200):
            r = c.post("/v1/query", json={"vectors": queries[i : i + 200].tolist(), "k": K})
            assert r.status_code == 200, r.text
            rows += [res["ids"] for res in r.json()["results"]]
    hits = sum(len(set(f) & set(t.tolist())) for f, t in zip(rows, truth, strict=True))
    return hits / truth.size


def _live_recall(prom: sv.Prometheus, rev: Revision) -> Sample:
    """Live recall once the sampled ground-truth queries (rate 0.5 of 1,000) are checked."""
    samples = f"sum({mnames.LIVE_RECALL_SAMPLES}_total{rev.matchers()})"
    prom.wait_for(samples, lambda r: (prom_value(r) or 0) >= 300, timeout=60)
    time.sleep(2.5)  # the last checks scraped
    return ask(prom.url, promql.live_recall(rev, "60s"))


def test_probe_recall_from_prometheus_predicts_new_query_recall(stack: Stack) -> None:
    url, truth = stack.prom.url, stack.truth
    canary = value(ask(url, promql.probe_recall(stack.canary_rev)))
    stable = value(ask(url, promql.probe_recall(stack.stable_rev)))
    assert canary < stable - 0.05, (canary, stable)
    assert abs(canary - truth["canary"]) <= TOLERANCE, (canary, truth)
    assert abs(stable - truth["stable"]) <= TOLERANCE, (stable, truth)
    drop = value(ask(url, promql.recall_drop(stack.canary_rev, stack.stable_rev)))
    assert drop == pytest.approx(stable - canary, abs=1e-9)


def test_a_recall_threshold_between_the_two_fails_the_canary_and_passes_the_stable(
    stack: Stack,
) -> None:
    between = (stack.truth["canary"] + stack.truth["stable"]) / 2
    a = spec(minRecall=between, maxRecallDrop=0.05)
    (recall, drop) = measured(
        stack.prom.url, checks_for(a, stack.canary_rev, stack.stable_rev, PROBE_INTERVAL)
    )
    assert (recall.check, recall.result) == (names.CHECK_RECALL, "Failed"), recall
    assert (drop.check, drop.result) == (names.CHECK_RECALL_DROP, "Failed"), drop
    assert recall.value is not None and recall.value < between
    (recall,) = measured(stack.prom.url, checks_for(a, stack.stable_rev, None, PROBE_INTERVAL))
    assert recall.result == "Successful", recall


def test_live_recall_from_prometheus_tracks_new_query_recall(stack: Stack) -> None:
    """The ground truth's queries were sampled (rate 0.5) and checked exactly in the
    background; the counters' ratio over the window is the recall of those queries."""
    for name in ("canary", "stable"):
        live = value(stack.live_recall[name])
        assert abs(live - stack.truth[name]) <= 0.05, (name, live, stack.truth)


# --- latency ------------------------------------------------------------------------------


def _bucket(seconds: float) -> int:
    return next(i for i, b in enumerate(mnames.QUERY_DURATION_BUCKETS) if seconds <= b)


def test_p95_under_load_is_in_the_bucket_of_the_clients_p95(stack: Stack) -> None:
    assert len(stack.client_ms) >= 300, len(stack.client_ms)
    client = float(np.percentile(stack.client_ms, 95)) / 1000
    server = value(stack.after_load["canary-live-p95"])
    # The client also times its own HTTP stack, which the server cannot see: the
    # server's p95 is in the client's bucket or the one below, never above.
    assert _bucket(client) - 1 <= _bucket(server) <= _bucket(client), (server, client)
    # Judged on live traffic (hundreds of requests per second), not on the replay.
    assert value(stack.after_load["canary-latency"]) == pytest.approx(1000 * server, rel=0.05)


def test_a_revision_without_live_traffic_is_judged_on_its_probe_replay(stack: Stack) -> None:
    assert stack.after_load["stable-live-p95"] == NoData("NaN")
    probe_ms = value(stack.after_load["stable-latency"])
    assert 0 < probe_ms < 50, probe_ms  # one search at efSearch 128 on 20k vectors


def test_error_rate_is_zero_with_traffic_and_no_data_without(stack: Stack) -> None:
    assert stack.after_load["canary-errors"] == Value(0.0)
    assert isinstance(stack.after_load["stable-errors"], NoData)


def test_every_check_renders_promql_that_prometheus_evaluates(stack: Stack) -> None:
    a = spec(
        p95LatencyMs=1000,
        maxErrorRate=0.01,
        minRecall=0.1,
        minLiveRecall=0.1,
        maxLatencyRatio=100,
        maxRecallDrop=1,
        # A ClusterModel's checks: valid PromQL, no series for an index (Inconclusive).
        maxProbeInertia=1,
        maxInertiaRatio=1,
        minProbeSilhouette=0.1,
    )
    checks = checks_for(a, stack.canary_rev, stack.stable_rev, PROBE_INTERVAL)
    assert [c.name for c in checks] == list(names.BUILTIN_CHECKS)
    results = measured(stack.prom.url, checks)
    assert all(r.result in ("Successful", "Inconclusive") for r in results), results
    by = {r.check: r for r in results}
    assert by[names.CHECK_RECALL].result == "Successful"
    assert by[names.CHECK_RECALL_DROP].result == "Successful"
    assert by[names.CHECK_LATENCY].result == "Successful"
    assert by[names.CHECK_LATENCY_RATIO].result == "Successful"  # replay over replay


# --- no data, errors -------------------------------------------------------------------------


def test_a_check_with_no_series_is_inconclusive(stack: Stack) -> None:
    gone = Revision(NAMESPACE, INDEX, "never-served")
    (r,) = measured(stack.prom.url, checks_for(spec(minRecall=0.5), gone, None, PROBE_INTERVAL))
    assert (r.result, r.value) == ("Inconclusive", None)
    assert r.message == "recall: no data (no series)"


def test_several_series_are_an_error_asking_to_aggregate(stack: Stack) -> None:
    r = ask(stack.prom.url, f"{mnames.RECALL}{{{mnames.LABEL_INDEX}={INDEX!r}}}".replace("'", '"'))
    assert isinstance(r, QueryError)
    assert r.message.startswith("2 series (")
    assert "aggregate the query" in r.message


def test_bad_promql_is_an_error_with_prometheus_message(stack: Stack) -> None:
    r = ask(stack.prom.url, "sum(rate(knn_requests_total[1m])")
    assert isinstance(r, QueryError)
    assert r.message.startswith("HTTP 400: Prometheus bad_data error:"), r.message


def test_prometheus_stopped_is_an_error_never_a_value_or_no_data(tmp_path: Path) -> None:
    prom = sv.Prometheus(tmp_path, [])
    prom.start()
    try:
        assert ask(prom.url, "vector(1)") == Value(1.0)
        assert isinstance(ask(prom.url, "vector(1) > 2"), NoData)
    finally:
        assert prom.stop() == 0
    r = ask(prom.url, "vector(1)")
    assert isinstance(r, QueryError), r
    assert r.message.startswith(f"cannot query Prometheus at {prom.url}: "), r.message
    assert judge(Check("recall", "v2", "vector(1)", min=0.5), r).result == "Error"


def test_a_query_slower_than_the_timeout_is_an_error() -> None:
    """Test double, named as such: a socket that accepts connections and never answers
    (a hung Prometheus cannot be made on demand). The timeout ends the wait."""
    with socket.create_server((sv.LOOPBACK, 0)) as hung:
        url = f"http://{sv.LOOPBACK}:{hung.getsockname()[1]}"
        t0 = time.monotonic()
        r = ask(url, "vector(1)", timeout=0.5)
        assert time.monotonic() - t0 < 5
    assert isinstance(r, QueryError), r
    assert r.message == f"Prometheus at {url} did not answer within 0.5s"


# --- authentication --------------------------------------------------------------------------


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _tls(workdir: Path) -> tuple[str, Path, Path]:
    """A CA (PEM) and a server certificate for 127.0.0.1 signed by it (cert, key files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(name("test-ca")).issuer_name(name("test-ca"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(name("prometheus")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(sv.LOOPBACK))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    workdir.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = workdir / "server.crt", workdir / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca.public_bytes(serialization.Encoding.PEM).decode(), cert_file, key_file


USER, PASSWORD = "knn-operator", "correct horse"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[sv.Prometheus, str]]:
    """A real Prometheus behind its own TLS and basic auth (--web.config.file)."""
    import bcrypt

    tmp = tmp_path_factory.mktemp("secured")
    ca_pem, cert, key = _tls(tmp / "tls")
    (tmp / "ca.crt").write_text(ca_pem)
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    web = {
        "tls_server_config": {"cert_file": str(cert), "key_file": str(key)},
        "basic_auth_users": {USER: hashed},
    }
    prom = sv.Prometheus(
        tmp / "prom", [], web_config=web, basic_auth=(USER, PASSWORD), ca_file=tmp / "ca.crt"
    )
    prom.start()
    try:
        yield prom, ca_pem
    finally:
        assert prom.stop() == 0, prom.child.stderr_tail()


def _through_secret(url: str, auth: dict[str, str] | None, secrets: dict[str, Any]) -> Sample:
    """As the operator does it: spec + Secret data → credentials → provider → query."""
    p = PrometheusProvider.model_validate(
        {"address": url, "timeout": "5s", "auth": auth, "caBundle": {"secretName": "prom-ca"}}
    )
    creds = resolve(p, secrets)

    async def go() -> Sample:
        async with Prometheus.of(p, creds) as client:
            return await client.query("vector(1)")

    return run(go)


BASIC = {"secretName": "prom", "usernameKey": "username", "passwordKey": "password"}


def test_basic_auth_and_ca_bundle_from_secrets(secured: tuple[sv.Prometheus, str]) -> None:
    prom, ca_pem = secured
    secrets = {
        "prom": {"username": b64(USER), "password": b64(PASSWORD)},
        "prom-ca": {"ca.crt": b64(ca_pem)},
    }
    assert _through_secret(prom.url, BASIC, secrets) == Value(1.0)


@pytest.mark.parametrize(
    ("auth", "data"),
    [
        (BASIC, {"username": b64(USER), "password": b64("wrong")}),
        (BASIC, {"username": b64("someone"), "password": b64(PASSWORD)}),
        ({"secretName": "prom", "bearerTokenKey": "token"}, {"token": b64("a-token")}),
        (None, {}),
    ],
    ids=["wrong-password", "wrong-user", "bearer-to-basic", "none"],
)
def test_wrong_credentials_are_an_error_saying_401(
    secured: tuple[sv.Prometheus, str], auth: dict[str, str] | None, data: dict[str, str]
) -> None:
    prom, ca_pem = secured
    r = _through_secret(prom.url, auth, {"prom": data, "prom-ca": {"ca.crt": b64(ca_pem)}})
    assert isinstance(r, QueryError), r
    assert r.message.startswith("HTTP 401 (check the credentials)"), r.message


def test_an_unknown_ca_is_an_error(secured: tuple[sv.Prometheus, str]) -> None:
    prom, _ = secured
    r = ask(prom.url, "vector(1)")  # the system's CAs do not know the test CA
    assert isinstance(r, QueryError), r
    assert "CERTIFICATE_VERIFY_FAILED" in r.message or "certificate" in r.message.lower()


async def _bearer_proxy(upstream: str, token: str) -> tuple[web.AppRunner, str]:
    """Stand-in for kube-rbac-proxy / oauth2-proxy, the bearer-token gates real
    installations put in front of Prometheus (Prometheus itself checks only basic
    auth): a real HTTP reverse proxy that forwards /api/v1/query when the token matches."""

    async def forward(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {token}":
            return web.Response(status=401, text="Unauthorized\n")
        async with (
            aiohttp.ClientSession() as s,
            s.post(f"{upstream}/api/v1/query", data=await request.post()) as r,
        ):
            return web.Response(
                status=r.status, body=await r.read(), content_type="application/json"
            )

    app = web.Application()
    app.router.add_post("/api/v1/query", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, sv.LOOPBACK, 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://{sv.LOOPBACK}:{port}"


def test_bearer_token_from_a_secret(stack: Stack) -> None:
    auth = {"secretName": "prom", "bearerTokenKey": "token"}

    async def go() -> tuple[Sample, Sample]:
        runner, url = await _bearer_proxy(stack.prom.url, "s3cret")
        try:
            answers = []
            for token in ("s3cret\n", "other"):
                p = PrometheusProvider.model_validate({"address": url, "auth": auth})
                creds = resolve(p, {"prom": {"token": b64(token)}})
                async with Prometheus.of(p, creds) as client:
                    answers.append(await client.query(promql.probe_recall(stack.canary_rev)))
            return answers[0], answers[1]
        finally:
            await runner.cleanup()

    right, wrong = run(go)
    assert isinstance(right, Value) and 0 < right.value < 1, right
    assert isinstance(wrong, QueryError) and wrong.message.startswith("HTTP 401"), wrong
