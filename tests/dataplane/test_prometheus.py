"""A real Prometheus scraping a real `knn-serve`, queried with the PromQL the rollout
analysis uses (rendered by knn_operator.analysis.promql): p95 latency, recall, error
rate, and the server's identity labels.

Needs Debian's `prometheus` package (installed by `make install`); without it the
tests fail, they do not skip.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from knn_operator.analysis import promql
from knn_operator.analysis.promql import Revision

if TYPE_CHECKING:  # mypy resolves modules from the repository root...
    from tests.dataplane import servers as sv
else:  # ...pytest puts this directory (it has no __init__.py) on sys.path.
    import servers as sv

pytestmark = pytest.mark.prometheus

INDEX, NAMESPACE = "prom-index", "prom-ns"
DIM, COUNT = 16, 2000
LOAD_SECONDS, LOAD_MAX_REQUESTS = 5.0, 20_000
WINDOW = "30s"


@dataclass(frozen=True)
class Stack:
    artifact: sv.Artifact
    server: sv.KnnServe
    prom: sv.Prometheus
    answered: int
    refused: int


def send_load(server: sv.KnnServe, seconds: float, limit: int) -> tuple[int, int]:
    """Single queries (and one bad one in 20) for `seconds`, at most `limit` requests."""
    rng = np.random.default_rng(31)
    answered = refused = 0
    deadline = time.monotonic() + seconds
    with server.client() as c:
        for i in range(limit):
            if time.monotonic() > deadline:
                break
            if i % 20 == 19:
                r = c.post("/v1/query", json={"vector": [0.5] * (DIM + 1)})
                assert r.status_code == 422, r.text
                refused += 1
            else:
                r = c.post("/v1/query", json={"vector": rng.standard_normal(DIM).tolist()})
                assert r.status_code == 200, r.text
                answered += 1
    return answered, refused


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("prometheus")
    data = np.random.default_rng(30).standard_normal((COUNT, DIM), dtype=np.float32)
    art = sv.build_artifact(tmp, data, "l2", version="prom-v7", probe_queries=200)
    with (
        sv.serve(
            art.directory,
            tmp / "logs",
            index_name=INDEX,
            namespace=NAMESPACE,
            args=["--probe-interval", "1"],
        ) as server,
        sv.prometheus(tmp / "prom", [server.address], scrape_interval="1s") as prom,
    ):
        prom.wait_for(f'up{{job="{prom.job}"}}', lambda r: _one_value(r) == 1.0)
        answered, refused = send_load(server, LOAD_SECONDS, LOAD_MAX_REQUESTS)
        # Two scrapes after the load, so every rate() window holds its increase.
        time.sleep(2.5)
        yield Stack(art, server, prom, answered, refused)
        code = prom.stop()
        assert code == 0, prom.child.stderr_tail()


def _one_value(result: list[dict[str, Any]]) -> float | None:
    return float(result[0]["value"][1]) if len(result) == 1 else None


def test_config_is_valid(stack: Stack) -> None:
    promtool = sv.require_command("promtool")
    run = subprocess.run(
        [str(promtool), "check", "config", str(stack.prom.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_target_is_up(stack: Stack) -> None:
    (target,) = stack.prom.targets_health()
    assert target["health"] == "up", target
    assert target["scrapeUrl"] == f"{stack.server.url}/metrics"


def _revision(stack: Stack) -> Revision:
    return Revision(NAMESPACE, INDEX, stack.artifact.manifest.version)


def test_p95_latency(stack: Stack) -> None:
    expr = promql.p95_seconds(_revision(stack), WINDOW)
    result = stack.prom.wait_for(expr, lambda r: _one_value(r) is not None, timeout=20)
    p95 = _one_value(result)
    assert p95 is not None
    assert 0.0 < p95 < 1.0, p95


def test_recall_matches_the_server_gauge(stack: Stack) -> None:
    (scraped,) = stack.prom.values(promql.probe_recall(_revision(stack)))
    (gauge,) = sv.metric_samples(stack.server.metrics_text(), "knn_recall_ratio")
    assert scraped == pytest.approx(gauge.value, abs=1e-9)
    assert 0.9 < scraped <= 1.0
    (series,) = stack.prom.query(f'knn_recall_ratio{{index="{INDEX}"}}')
    assert series["metric"]["k"] == "10"


def test_no_server_errors(stack: Stack) -> None:
    # 5xx only: the refused bad inputs (4xx) are no server failure.
    assert stack.prom.values(promql.error_rate(_revision(stack), WINDOW)) == [0.0]
    (bad,) = stack.prom.values(f'sum(rate(knn_requests_total{{code="422"}}[{WINDOW}]))')
    assert bad > 0
    (ok,) = stack.prom.values(f'sum(rate(knn_requests_total{{code="200"}}[{WINDOW}]))')
    assert ok > bad


def test_request_totals_match_the_load(stack: Stack) -> None:
    (ok,) = stack.prom.values(f'sum(knn_requests_total{{index="{INDEX}",code="200"}})')
    (bad,) = stack.prom.values(f'sum(knn_requests_total{{index="{INDEX}",code="422"}})')
    assert (ok, bad) == (stack.answered, stack.refused)


def test_identity_labels_survive_the_scrape(stack: Stack) -> None:
    version = stack.artifact.manifest.version
    for name in (
        "knn_requests_total",
        "knn_query_duration_seconds_count",
        "knn_recall_ratio",
        "knn_index_vectors",
        "knn_index_info",
    ):
        result = stack.prom.query(f'{name}{{job="{stack.prom.job}"}}')
        assert result, name
        for series in result:
            labels = series["metric"]
            assert labels["index"] == INDEX, labels
            assert labels["namespace"] == NAMESPACE, labels
            assert labels["version"] == version, labels
            assert labels["instance"] == stack.server.address, labels


def test_prometheus_stops_cleanly(tmp_path: Path) -> None:
    """Start and stop on its own (no target): SIGTERM ends it with status 0."""
    prom = sv.Prometheus(tmp_path, [])
    try:
        prom.start()
        assert prom.query("vector(1)")[0]["value"][1] == "1"
    finally:
        code = prom.stop()
    assert code == 0, prom.child.stderr_tail()
