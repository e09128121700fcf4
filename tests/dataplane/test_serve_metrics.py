"""/metrics of the real `knn-serve`: valid exposition (promtool), identity labels on
every series, request counts by code, the latency histogram, index facts."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pytest
from knn_contracts import metrics as names
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:  # mypy resolves modules from the repository root...
    from tests.dataplane import servers as sv
else:  # ...pytest puts this directory (it has no __init__.py) on sys.path.
    import servers as sv

DIM, COUNT, PROBES = 24, 1500, 100
INDEX, NAMESPACE, VERSION = "products-search", "shop-prod", "2024-06-01.3"
JSON_CT = {"content-type": "application/json"}


@dataclass(frozen=True)
class Served:
    artifact: sv.Artifact
    server: sv.KnnServe
    client: httpx.Client

    def metrics(self) -> str:
        r = self.client.get("/metrics")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
        return r.text

    def query(self, seed: int) -> httpx.Response:
        v = np.random.default_rng(seed).standard_normal(DIM).tolist()
        return self.client.post("/v1/query", json={"vector": v, "k": 5})


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("metrics")
    data = np.random.default_rng(21).standard_normal((COUNT, DIM), dtype=np.float32)
    art = sv.build_artifact(tmp, data, "ip", version=VERSION, probe_queries=PROBES)
    with (
        sv.serve(art.directory, tmp / "logs", index_name=INDEX, namespace=NAMESPACE) as server,
        server.client() as client,
    ):
        s = Served(art, server, client)
        # Some of everything: answers, refusals, and a batch in binary.
        for i in range(5):
            assert s.query(i).status_code == 200
        assert client.post("/v1/query", json={"vector": [1.0], "k": 5}).status_code == 422
        assert client.post("/v1/query", content=b"{", headers=JSON_CT).status_code == 400
        yield s


def requests_by_code(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in sv.metric_samples(text, names.REQUESTS):
        if s.name == "knn_requests_total":
            out[s.labels[names.LABEL_CODE]] = out.get(s.labels[names.LABEL_CODE], 0.0) + s.value
    return out


@pytest.mark.prometheus
def test_promtool_accepts_the_exposition(served: Served) -> None:
    run = sv.promtool_check_metrics(served.metrics())
    assert run.returncode == 0, run.stderr
    assert run.stdout == "" and run.stderr == "", (run.stdout, run.stderr)


def test_every_series_carries_the_identity_labels(served: Served) -> None:
    text = served.metrics()
    knn_series = [
        s
        for family in text_string_to_metric_families(text)
        if family.name.startswith("knn_")
        for s in family.samples
    ]
    families = {s.name for s in knn_series}
    assert {
        "knn_query_duration_seconds_bucket",
        "knn_query_duration_seconds_count",
        "knn_query_duration_seconds_sum",
        "knn_requests_total",
        "knn_recall_ratio",
        "knn_index_vectors",
        "knn_index_info",
    } <= families, families
    for s in knn_series:
        assert s.labels.get("index") == INDEX, s
        assert s.labels.get("namespace") == NAMESPACE, s
        assert s.labels.get("version") == VERSION, s
    assert not any(name.endswith("_created") for name in families), families


def test_bad_input_increments_the_422_counter(served: Served) -> None:
    before = requests_by_code(served.metrics())
    for dim in (1, DIM - 1, DIM + 1):
        r = served.client.post("/v1/query", json={"vector": [0.5] * dim})
        assert r.status_code == 422
    after = requests_by_code(served.metrics())
    assert after["422"] - before.get("422", 0.0) == 3
    assert after.get("200") == before.get("200")
    assert not any(code.startswith("5") for code in after), after


def test_answers_are_counted_and_timed(served: Served) -> None:
    def histogram(text: str) -> dict[str, float]:
        return {
            (s.name + s.labels.get("le", "")): s.value
            for s in sv.metric_samples(text, names.QUERY_DURATION)
            if s.labels[names.LABEL_SOURCE] == names.SOURCE_LIVE
        }

    text = served.metrics()
    before, codes = histogram(text), requests_by_code(text)
    for i in range(7):
        assert served.query(100 + i).status_code == 200
    text = served.metrics()
    after, codes_after = histogram(text), requests_by_code(text)
    count = "knn_query_duration_seconds_count"
    assert after[count] - before[count] == 7
    assert codes_after["200"] - codes["200"] == 7
    assert after["knn_query_duration_seconds_sum"] > before["knn_query_duration_seconds_sum"]

    family = next(
        f for f in text_string_to_metric_families(text) if f.name.startswith(names.QUERY_DURATION)
    )
    assert family.type == "histogram"
    bounds = [float(b) for b in names.QUERY_DURATION_BUCKETS] + [float("inf")]
    buckets = [after[f"knn_query_duration_seconds_bucket{le}"] for le in _le(bounds)]
    assert buckets == sorted(buckets), "cumulative buckets"
    assert buckets[-1] == after[count]


def test_probe_replay_latency_is_labelled_apart(served: Served) -> None:
    """Each replayed probe is timed under source=probe, never mixed into live latency:
    live p95 excludes the replay, and a revision without traffic still has a latency."""

    def counts(text: str) -> dict[str, float]:
        return {
            s.labels[names.LABEL_SOURCE]: s.value
            for s in sv.metric_samples(text, names.QUERY_DURATION)
            if s.name == f"{names.QUERY_DURATION}_count"
        }

    before = counts(served.metrics())
    probes = PROBES
    # knn-serve's warm-up replay ran before /readyz said ready: whole replays only.
    assert before[names.SOURCE_PROBE] >= probes
    assert before[names.SOURCE_PROBE] % probes == 0, before
    assert served.query(999).status_code == 200
    after = counts(served.metrics())
    assert after[names.SOURCE_LIVE] - before[names.SOURCE_LIVE] == 1
    assert (after[names.SOURCE_PROBE] - before[names.SOURCE_PROBE]) % probes == 0
    probe_sum = next(
        s.value
        for s in sv.metric_samples(served.metrics(), names.QUERY_DURATION)
        if s.name == f"{names.QUERY_DURATION}_sum"
        and s.labels[names.LABEL_SOURCE] == names.SOURCE_PROBE
    )
    assert 0 < probe_sum / after[names.SOURCE_PROBE] < 0.1  # seconds per probe search


def _le(bounds: list[float]) -> list[str]:
    return ["+Inf" if b == float("inf") else repr(b) for b in bounds]


def test_index_facts(served: Served) -> None:
    text = served.metrics()
    (vectors,) = sv.metric_samples(text, names.INDEX_VECTORS)
    assert vectors.value == COUNT
    (info,) = sv.metric_samples(text, names.INDEX_INFO)
    assert info.value == 1
    p = served.artifact.manifest.parameters
    assert info.labels["metric"] == "ip"
    assert info.labels["dimension"] == str(DIM)
    assert info.labels["m"] == str(p.m)
    assert info.labels["ef_search"] == str(p.ef_search)
    assert info.labels["kind"] == "hnsw"
    (recall,) = sv.metric_samples(text, names.RECALL)
    assert recall.labels["k"] == "10"
    assert 0.9 <= recall.value <= 1.0
