"""Queries against the real `knn-serve` over HTTP on loopback, for every metric.

Each metric gets its own artifact built by the real `knn-build`: l2 with int
ids 1000+i, ip with string ids, cosine with the builder's default ids (row
numbers). Answers are judged against a float64 numpy brute force written here,
not against anything in knn_serving.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest
from knn_contracts.artifact import Metric

if TYPE_CHECKING:  # mypy resolves modules from the repository root...
    from tests.dataplane import servers as sv
else:  # ...pytest puts this directory (it has no __init__.py) on sys.path.
    import servers as sv

N, K, MAX_EF, QUERIES = 3000, 10, 1000, 200
DIMENSION: dict[Metric, int] = {"l2": 32, "ip": 24, "cosine": 16}
METRICS: tuple[Metric, ...] = ("l2", "ip", "cosine")
F32 = npt.NDArray[np.float32]


def ids_for(metric: Metric) -> list[int] | list[str] | None:
    if metric == "l2":
        return [1000 + i for i in range(N)]
    if metric == "ip":
        return [f"doc-{i:05d}-{'é' if i % 3 == 0 else 'x'}" for i in range(N)]
    return None  # the builder numbers rows 0..N-1


def distances(data: F32, queries: F32, metric: Metric) -> npt.NDArray[np.float64]:
    """hnswlib's distance of every data row to every query, in float64:
    squared L2, 1 - inner product, 1 - cosine similarity."""
    x = data.astype(np.float64)
    q = queries.astype(np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    if metric == "l2":
        d: npt.NDArray[np.float64] = (
            (q * q).sum(axis=1)[:, None] + (x * x).sum(axis=1)[None, :] - 2.0 * (q @ x.T)
        )
        return d
    return 1.0 - q @ x.T


def brute_force(
    data: F32, queries: F32, k: int, metric: Metric, exclude: npt.NDArray[np.int64] | None = None
) -> npt.NDArray[np.int64]:
    """Rows of the exact top-k per query, nearest first; `exclude[i] >= 0` is a row query
    i must not return (its own row)."""
    d = distances(data, queries, metric)
    if exclude is not None:
        own = exclude >= 0
        d[np.flatnonzero(own), exclude[own]] = np.inf
    top: npt.NDArray[np.int64] = np.argsort(d, axis=1, kind="stable")[:, :k].astype(np.int64)
    return top


def recall(found: Sequence[Sequence[int]], truth: npt.NDArray[np.int64]) -> float:
    k = truth.shape[1]
    hits = sum(len(set(f[:k]) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return float(hits) / float(truth.shape[0] * k)


@dataclass(frozen=True)
class Served:
    artifact: sv.Artifact
    server: sv.KnnServe
    client: httpx.Client
    queries: F32  # fresh queries, not rows of the data

    @property
    def metric(self) -> Metric:
        return self.artifact.metric

    def rows(self, ids: Sequence[Any]) -> list[int]:
        row_of = self.artifact.row_of()
        return [row_of[i] for i in ids]


@pytest.fixture(scope="module", params=METRICS)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    metric: Metric = request.param
    d = DIMENSION[metric]
    tmp = tmp_path_factory.mktemp(f"serve-{metric}")
    data = np.random.default_rng(7).standard_normal((N, d), dtype=np.float32)
    queries = np.random.default_rng(8).standard_normal((QUERIES, d), dtype=np.float32)
    art = sv.build_artifact(tmp, data, metric, ids=ids_for(metric), version=f"{metric}-v1")
    with (
        sv.serve(art.directory, tmp / "logs", args=["--max-ef", str(MAX_EF)]) as server,
        server.client() as client,
    ):
        yield Served(art, server, client, queries)


def post_json(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    r = client.post("/v1/query", json=body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    out: dict[str, Any] = r.json()
    return out


def check_neighbours(s: Served, query: F32, ids: list[Any], dists: list[float], k: int) -> None:
    """k original ids, nearest first, each at the distance the test computes for its row."""
    assert len(ids) == len(dists) == k
    want_type = str if s.artifact.manifest.id_type == "str" else int
    assert all(type(i) is want_type for i in ids), ids
    assert len(set(ids)) == k, "duplicate ids"
    assert dists == sorted(dists), "distances must be ascending"
    rows = s.rows(ids)  # KeyError if an id is not one of the artifact's original ids
    expected = distances(s.artifact.data[rows], query[None, :], s.metric)[0]
    np.testing.assert_allclose(dists, expected, rtol=1e-4, atol=1e-3)


def test_single_query(served: Served) -> None:
    q = served.queries[0]
    out = post_json(served.client, {"vector": q.tolist(), "k": K})
    assert set(out) == {"ids", "distances", "version"}
    assert out["version"] == served.artifact.manifest.version
    check_neighbours(served, q, out["ids"], out["distances"], K)


def test_original_ids(served: Served) -> None:
    """Querying with a data row finds that row's own original id first."""
    row = 123
    out = post_json(served.client, {"vector": served.artifact.data[row].tolist(), "k": 3})
    assert out["ids"][0] == served.artifact.ids[row]
    if served.metric == "l2":
        assert out["ids"][0] == 1000 + row
        assert out["distances"][0] == pytest.approx(0.0, abs=1e-4)
    if served.metric == "ip":
        assert out["ids"][0] == "doc-00123-é"


def test_batch_query_matches_single_queries(served: Served) -> None:
    qs = served.queries[:5]
    out = post_json(served.client, {"vectors": qs.tolist(), "k": 7})
    assert set(out) == {"results", "version"}
    assert out["version"] == served.artifact.manifest.version
    assert len(out["results"]) == 5
    for q, res in zip(qs, out["results"], strict=True):
        assert set(res) == {"ids", "distances"}
        check_neighbours(served, q, res["ids"], res["distances"], 7)
        single = post_json(served.client, {"vector": q.tolist(), "k": 7})
        assert single["ids"] == res["ids"]


def test_binary_float32_query(served: Served) -> None:
    qs = np.ascontiguousarray(served.queries[:4], dtype="<f4")
    r = served.client.post(
        "/v1/query",
        params={"k": 6, "ef": 200},
        content=qs.tobytes(),
        headers={"content-type": "application/octet-stream"},
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["version"] == served.artifact.manifest.version
    as_json = post_json(served.client, {"vectors": qs.tolist(), "k": 6, "ef": 200})
    assert out["results"] == as_json["results"]
    for q, res in zip(qs, out["results"], strict=True):
        check_neighbours(served, q, res["ids"], res["distances"], 6)


def test_binary_single_row_is_bitwise_the_vector(served: Served) -> None:
    """A row packed with struct (not numpy) is read as the same little-endian float32s."""
    row = 42
    v = served.artifact.data[row]
    body = struct.pack(f"<{v.shape[0]}f", *v.tolist())
    r = served.client.post(
        "/v1/query",
        params={"k": 1},
        content=body,
        headers={"content-type": "application/octet-stream"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["ids"] == [served.artifact.ids[row]]


@pytest.mark.parametrize(
    ("k", "ef", "status"),
    [
        (10, 9, 422),  # ef < k
        (10, MAX_EF + 1, 422),  # ef > --max-ef
        (10, 10, 200),  # ef == k is allowed
        (10, MAX_EF, 200),  # ef == --max-ef is allowed
    ],
)
def test_ef_bounds(served: Served, k: int, ef: int, status: int) -> None:
    q = served.queries[1].tolist()
    r = served.client.post("/v1/query", json={"vector": q, "k": k, "ef": ef})
    assert r.status_code == status, r.text
    if status == 422:
        assert "'ef'" in r.json()["detail"]
        assert str(k if ef < k else MAX_EF) in r.json()["detail"]
    r = served.client.post(
        "/v1/query",
        params={"k": k, "ef": ef},
        content=served.queries[1].astype("<f4").tobytes(),
        headers={"content-type": "application/octet-stream"},
    )
    assert r.status_code == status, r.text


def _found_rows(served: Served, queries: F32, k: int, ef: int | None = None) -> list[list[int]]:
    body: dict[str, Any] = {"vectors": queries.tolist(), "k": k}
    if ef is not None:
        body["ef"] = ef
    return [served.rows(res["ids"]) for res in post_json(served.client, body)["results"]]


def test_recall_against_brute_force(served: Served) -> None:
    truth = brute_force(served.artifact.data, served.queries, K, served.metric)
    default = recall(_found_rows(served, served.queries, K), truth)
    assert default >= 0.9, f"recall@{K} {default:.4f} at the default ef"
    wide = recall(_found_rows(served, served.queries, K, ef=MAX_EF), truth)
    assert wide >= default, (
        f"recall at ef={MAX_EF} ({wide:.4f}) below the default's ({default:.4f})"
    )
    assert wide >= 0.99


def test_recall_gauge_agrees_with_an_independent_replay(served: Served) -> None:
    """knn_recall_ratio{k} equals the recall the test computes from the server's own
    answers to the probe queries, against truth the test computes itself."""
    with np.load(served.artifact.directory / "probes.npz", allow_pickle=False) as z:
        queries = np.asarray(z["queries"], dtype=np.float32)
        self_labels = np.asarray(z["self_labels"], dtype=np.int64)
        k = int(z["truth"].shape[1])
    assert k == served.artifact.manifest.validation.k == K
    assert (self_labels >= 0).all(), "probes are held-out rows of the data"
    np.testing.assert_array_equal(queries, served.artifact.data[self_labels])
    truth = brute_force(served.artifact.data, queries, k, served.metric, exclude=self_labels)

    found: list[list[int]] = []
    for own, rows in zip(self_labels, _found_rows(served, queries, k + 1), strict=True):
        kept = [r for r in rows if r != own]
        found.append(kept[:k])
    independent = recall(found, truth)

    text = served.server.metrics_text()
    gauges = [
        s
        for s in sv.metric_samples(text, "knn_recall_ratio")
        if s.labels.get("k") == str(k)
        and s.labels.get("index") == sv.INDEX_NAME
        and s.labels.get("namespace") == sv.NAMESPACE
        and s.labels.get("version") == served.artifact.manifest.version
    ]
    assert len(gauges) == 1, text
    gauge = gauges[0].value
    assert abs(gauge - independent) <= 0.01, (gauge, independent)
    assert 0.9 <= gauge <= 1.0


def test_info_returns_the_manifest(served: Served) -> None:
    r = served.client.get("/v1/info")
    assert r.status_code == 200
    doc = r.json()
    live = doc.pop("live")
    assert doc == served.artifact.manifest.model_dump(mode="json")
    assert live["ready"] is True
    assert 0.9 <= live["recall"] <= 1.0


def test_concurrent_single_queries_get_their_own_answers(served: Served) -> None:
    """Single queries sent at once by many clients (which the search thread answers
    in coalesced batches) get what each gets alone, whatever their k and ef."""
    cases = [(served.queries[i], 3 + i % 3, None if i % 4 else 50 + i % 2) for i in range(120)]

    def body(q: F32, k: int, ef: int | None) -> dict[str, Any]:
        return {"vector": q.tolist(), "k": k, **({} if ef is None else {"ef": ef})}

    alone = [post_json(served.client, body(*c)) for c in cases]

    def ask(case: tuple[F32, int, int | None]) -> dict[str, Any]:
        with served.server.client() as c:
            return post_json(c, body(*case))

    with ThreadPoolExecutor(max_workers=16) as pool:
        together = list(pool.map(ask, cases * 2))
    assert together == alone * 2
