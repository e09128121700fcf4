"""Every panel of the Grafana dashboard against a real Prometheus (the pinned v3 build of
the tools cache, what the local cluster runs) scraping real servers and the real
operator: each query, with Grafana's variables substituted, parses and returns series
whose labels fill its legend.

The cheapest honest setup that gives every panel data: two real `knn-serve`s of one
index (a "stable" and a "canary" version) under real load, and the real operator,
against the real API server with the chart's RBAC, reconciling a KnnIndex of that
name (which gives the per-object canary weight and the phase gauge). No rollout is
driven: the panels' queries need series, and the operator's rollout tests
(test_operator_rollout.py) own rollouts. The alert rules are loaded into the same
Prometheus, to show that v3 evaluates every one without error (promtool is Debian's v2).

Needs the control-plane tools, the pinned Prometheus and Debian's promtool; fails,
never skips.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest
import yaml
from knn_devtools.dashboard_data import fetch
from knn_devtools.dashboard_plot import draw
from knn_devtools.knnoperator import OperatorProcess
from knn_devtools.kubectl import Kubectl
from knn_devtools.rbac import service_account_with_role
from knn_devtools.tools import tool_path
from knn_operator.monitoring import alerts, dashboard, render

if TYPE_CHECKING:
    from tests.controlplane import operator_support as ops
    from tests.dataplane import servers as sv
else:
    import operator_support as ops

    from tests.dataplane import servers as sv

pytestmark = [pytest.mark.controlplane, pytest.mark.prometheus]

NAME = "products"
DIM, COUNT = 16, 3000
VERSIONS = {"stable": ("v1111aaaa", 64), "canary": ("v2222bbbb", 10)}  # version, efSearch
LOAD_SECONDS = 4.0
OPERATOR_JOB, SERVING_JOB = "knn-operator", "knn-serve"
RATE = "1m"  # $__rate_interval: holds the load for a minute after it ends


@dataclass(frozen=True)
class Stack:
    namespace: str
    prom: sv.Prometheus
    operator: OperatorProcess
    began: float


def _load(servers: list[sv.KnnServe]) -> None:
    """Single queries to each server in turn, one malformed in ten (a 422)."""
    rng = np.random.default_rng(5)
    clients = [s.client() for s in servers]
    deadline, i = time.monotonic() + LOAD_SECONDS, 0
    try:
        while time.monotonic() < deadline:
            for c in clients:
                vector = [0.0] * (DIM + 1) if i % 10 == 9 else rng.standard_normal(DIM).tolist()
                r = c.post("/v1/query", json={"vector": vector, "k": 10})
                assert r.status_code == (422 if i % 10 == 9 else 200), r.text
            i += 1
    finally:
        for c in clients:
            c.close()


@pytest.fixture(scope="module")
def stack(
    kubectl: Kubectl, knn_crds: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("dashboard")
    ns = ops.make_namespace(kubectl, "dashboard")
    kubectl.run("apply", "--server-side", "-f", str(ops.CLUSTER_ROLE_FILE))
    account = service_account_with_role(
        kubectl,
        namespace=ns,
        name="knn-operator",
        role=ops.ROLE_NAME,
        role_kind="ClusterRole",
        cluster_wide=True,
        kubeconfig_path=tmp / "operator.kubeconfig",
    )
    operator = OperatorProcess(account.kubeconfig, tmp / "operator.log", resync_seconds=2)
    data = np.random.default_rng(4).standard_normal((COUNT, DIM), dtype=np.float32)
    rules = tmp / "rules.yml"
    jobs = {"operator": OPERATOR_JOB, "serving": SERVING_JOB}
    rules.write_text(yaml.safe_dump(alerts.groups(render.LiteralRender(alerts.defaults(), jobs))))
    servers: list[sv.KnnServe] = []
    prom: sv.Prometheus | None = None
    try:
        operator.start()
        ops.apply(kubectl, ns, ops.knn_index(NAME))
        ops.wait_job(kubectl, ns, NAME, ops.expected_version({}), operator)
        for role, (version, ef) in VERSIONS.items():
            art = sv.build_artifact(tmp / role, data, "l2", version=version, ef_search=ef)
            server = sv.KnnServe(
                art.directory,
                tmp / "logs" / role,
                index_name=NAME,
                namespace=ns,
                args=["--probe-interval", "1", "--live-recall-rate", "1"],
            )
            servers.append(server)
            server.start()
        prom = sv.Prometheus(
            tmp / "prometheus",
            [s.address for s in servers],
            job=SERVING_JOB,
            binary=tool_path("prometheus"),
            extra_jobs={OPERATOR_JOB: [f"127.0.0.1:{operator.metrics_port}"]},
            rule_files=[rules],
        )
        began = time.time()
        prom.start()
        prom.wait_for(f'up{{job="{SERVING_JOB}"}} == 1', lambda r: len(r) == 2)
        _load(servers)
        time.sleep(2.5)  # two scrapes after the load
        yield Stack(ns, prom, operator, began)
    finally:
        if prom is not None:
            prom.stop()
        for server in servers:
            server.stop()
        operator.stop()
        ops.clean_namespace(kubectl, ns)


def query_range(prom: sv.Prometheus, expr: str, start: float) -> dict[str, Any]:
    """Grafana's request for a time-series panel: /api/v1/query_range over the run."""
    with prom.client() as c:
        r = c.get(
            "/api/v1/query_range",
            params={"query": expr, "start": start, "end": time.time(), "step": "1s"},
        )
    return _data(r, expr)


def query(prom: sv.Prometheus, expr: str) -> dict[str, Any]:
    with prom.client() as c:
        r = c.get("/api/v1/query", params={"query": expr})
    return _data(r, expr)


def _data(r: httpx.Response, expr: str) -> dict[str, Any]:
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", f"{expr}\n{body}"
    data: dict[str, Any] = body["data"]
    return data


TARGETS = [
    pytest.param(panel, target, id=f"{panel.title} [{target.legend}]")
    for panel in dashboard.PANELS
    for target in panel.targets
]


@pytest.mark.parametrize(("panel", "target"), TARGETS)
def test_panel_query_parses_and_returns_series(
    stack: Stack, panel: dashboard.Panel, target: dashboard.Target
) -> None:
    expr = dashboard.substitute(target.expr, stack.namespace, NAME, RATE)
    if target.instant:
        data = query(stack.prom, expr)
        assert data["resultType"] == "vector"
    else:
        data = query_range(stack.prom, expr, stack.began)
        assert data["resultType"] == "matrix"
    result = data["result"]
    assert result, f"{panel.title}: no series for\n{expr}"
    wanted = set(re.findall(r"\{\{(\w+)\}\}", target.legend))
    for series in result:
        assert wanted <= set(series["metric"]), (panel.title, wanted, series["metric"])


def _latest(stack: Stack, expr: str) -> dict[str, float]:
    """The last value of every series of a range panel, by its version (and code)."""
    data = query_range(
        stack.prom, dashboard.substitute(expr, stack.namespace, NAME, RATE), stack.began
    )
    out = {}
    for series in data["result"]:
        labels = series["metric"]
        key = " ".join(labels[k] for k in ("version", "code") if k in labels) or "_"
        out[key] = float(series["values"][-1][1])
    return out


def _panel(title: str) -> dashboard.Panel:
    (panel,) = [p for p in dashboard.PANELS if p.title.startswith(title)]
    return panel


def test_revision_panels_show_the_stable_and_the_canary(stack: Stack) -> None:
    versions = {v for v, _ in VERSIONS.values()}
    for title in ("p95 latency", "Recall by revision", "Error rate"):
        for target in _panel(title).targets:
            assert set(_latest(stack, target.expr)) == versions, (title, target.legend)
    (errors,) = _panel("Error rate").targets
    assert set(_latest(stack, errors.expr).values()) == {0.0}, "no 5xx was served"
    (qps,) = _panel("Queries per second").targets
    by_code = _latest(stack, qps.expr)
    assert {k.split()[1] for k in by_code} == {"200", "422"}, by_code
    assert all(v > 0 for v in by_code.values()), by_code
    # The low-efSearch canary finds fewer true neighbours than the stable on its probes.
    probes = _latest(stack, _panel("Recall by revision").targets[0].expr)
    assert probes[VERSIONS["canary"][0]] < probes[VERSIONS["stable"][0]], probes


def test_operator_panels_show_the_reconciled_index(stack: Stack) -> None:
    (weight,) = _panel("Canary weight").targets
    assert _latest(stack, weight.expr) == {"_": 0.0}, "no rollout: weight 0"
    (phases,) = _panel("Objects by phase").targets
    data = query(stack.prom, phases.expr)
    counts = {s["metric"]["phase"]: float(s["value"][1]) for s in data["result"]}
    # Cluster-wide: other tests' objects may count too, ours is Building (no builder runs).
    assert counts.get("Building", 0) >= 1, counts


def test_the_alert_rules_evaluate_in_this_prometheus(stack: Stack) -> None:
    """Prometheus v3 loads the rules and evaluates every one without error; on this
    healthy stack neither the operator nor a serving target is reported missing."""
    deadline = time.monotonic() + 20
    while True:
        with stack.prom.client() as c:
            groups = c.get("/api/v1/rules").json()["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        if rules and all(r.get("lastEvaluation", "").startswith("2") for r in rules):
            break
        assert time.monotonic() < deadline, rules
        time.sleep(0.5)
    assert [r["name"] for r in rules] == [a.name for a in alerts.ALERTS]
    for r in rules:
        assert r["health"] == "ok", (r["name"], r.get("lastError"))
    state = {r["name"]: r["state"] for r in rules}
    assert state["KnnOperatorDown"] == "inactive", state
    assert state["KnnServingRevisionWithoutMetrics"] == "inactive", state
    assert state["KnnOperatorNotReconciling"] == "inactive", state


def test_the_picture_script_draws_every_panel_from_this_prometheus(
    stack: Stack, tmp_path: Path
) -> None:
    """knn_devtools.dashboard_png's own code path (fetch, draw) on this real data: every
    panel has lines or rows, and the figure is written."""
    end = time.time()
    panels = fetch(stack.prom.url, stack.began, end, namespace=stack.namespace, index=NAME)
    assert [p.panel for p in panels] == list(dashboard.PANELS)
    for p in panels:
        assert p.lines or p.rows, p.panel.title
    (table,) = [p for p in panels if p.panel.kind == "table"]
    columns = {t.column for t in table.panel.targets}
    assert all(any(c in row for row in table.rows) for c in columns), table.rows
    out = tmp_path / "dashboard.png"
    draw(panels, stack.began, "test").savefig(out)
    assert out.read_bytes().startswith(b"\x89PNG")
