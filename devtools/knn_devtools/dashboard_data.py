"""The dashboard's panels as data, queried from a Prometheus the way Grafana queries
them (range queries for time series, instant ones for tables), with Grafana's
variables filled in."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx
from knn_operator.monitoring import dashboard
from knn_operator.monitoring.dashboard import Panel, Target

_LEGEND = re.compile(r"\{\{(\w+)\}\}")


@dataclass(frozen=True)
class Line:
    label: str
    times: list[float]  # unix seconds
    values: list[float]


@dataclass(frozen=True)
class PanelData:
    panel: Panel
    lines: list[Line]  # time series
    rows: list[dict[str, str]]  # tables: one per series, its labels and its value by column


def legend(target: Target, labels: dict[str, str]) -> str:
    """Grafana's legend format: {{label}} replaced by the series' label value."""
    return _LEGEND.sub(lambda m: labels.get(m.group(1), ""), target.legend)


def _get(client: httpx.Client, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    r = client.get(path, params=params)
    body = r.json()
    if r.status_code != 200 or body.get("status") != "success":
        raise RuntimeError(f"{params['query']}: HTTP {r.status_code} {body}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def fetch(
    url: str,
    start: float,
    end: float,
    *,
    namespace: str = dashboard.ALL,
    index: str = dashboard.ALL,
    step: float = 2.0,
    rate: str = "30s",
) -> list[PanelData]:
    out = []
    with httpx.Client(base_url=url, timeout=60.0, trust_env=False) as client:
        for panel in dashboard.PANELS:
            lines, rows = [], []
            for target in panel.targets:
                expr = dashboard.substitute(target.expr, namespace, index, rate)
                if target.instant:
                    for s in _get(client, "/api/v1/query", {"query": expr, "time": end}):
                        rows.append({**s["metric"], target.column: s["value"][1]})
                    continue
                params = {"query": expr, "start": start, "end": end, "step": step}
                for s in _get(client, "/api/v1/query_range", params):
                    times = [float(t) for t, _ in s["values"]]
                    values = [float(v) for _, v in s["values"]]
                    lines.append(Line(legend(target, s["metric"]), times, values))
            out.append(PanelData(panel, lines, rows))
    return out
