"""The Grafana dashboard, as data: panels and their PromQL built from the contract
names, and the dashboard JSON model Grafana imports. Pure.

Queries use Grafana's variables: `$namespace` and `$index` (multi-value, "All" is
`.+`) and `$__rate_interval`. `PANELS` is also what the tests query against a real
Prometheus (with the variables substituted) and what knn_devtools.dashboard_png
draws, so the picture, the test and the dashboard cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from knn_contracts import metrics as serving

from . import series as s
from .promql import REVISION_BY, by, q

UID: Final = "knn-operator"
TITLE: Final = "knn-operator: rollouts, latency, recall"
ALL: Final = ".+"
RATE: Final = "$__rate_interval"

_SCOPE: Final = (
    f'{serving.LABEL_NAMESPACE}=~"$namespace",{serving.LABEL_INDEX}=~"$index"'  # serving pods
)
_OBJECT: Final = (
    f'{s.KIND}={q(s.KNN_INDEX_KIND)},{s.WEIGHT_NAMESPACE}=~"$namespace",{s.WEIGHT_NAME}=~"$index"'
)
# Scrape-target labels (Prometheus' and prometheus-operator's), dropped so one revision
# with several pods is one row.
_TARGET_LABELS: Final = ("job", "instance", "pod", "container", "endpoint", "service")
# knn_index_info's ef_search is the artifact's build-time default, not the revision's
# serving efSearch (--ef-search): shown, it would mislabel every revision of a version.
_HIDDEN_INFO: Final = ("ef_search",)

Unit = Literal["percent", "ms", "percentunit", "reqps", "short", "none"]


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str  # Grafana legend format, {{label}}
    instant: bool = False  # a table's current values, not a range
    column: str = ""  # in a table: the name of this query's value column


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    kind: Literal["timeseries", "table"]
    unit: Unit
    targets: tuple[Target, ...]
    width: int = 12
    height: int = 8


def _legend(*labels: str) -> str:
    return " ".join("{{" + label + "}}" for label in labels)


REVISION_LEGEND: Final = _legend(serving.LABEL_INDEX, serving.LABEL_VERSION)


def _p95_ms(source: str) -> str:
    buckets = f"{s.DURATION_BUCKET}{{{_SCOPE},{source}}}[{RATE}]"
    return f"1000 * histogram_quantile(0.95, sum {by(*s.REVISION, 'le')} (rate({buckets})))"


def _requests(extra: str = "") -> str:
    selector = f"{s.REQUESTS}{{{_SCOPE}{',' + extra if extra else ''}}}"
    return f"sum {REVISION_BY} (rate({selector}[{RATE}]))"


_LIVE_SOURCE: Final = f"{serving.LABEL_SOURCE}!={q(serving.SOURCE_PROBE)}"
_PROBE_SOURCE: Final = f"{serving.LABEL_SOURCE}={q(serving.SOURCE_PROBE)}"
_RECALL: Final = f"avg {REVISION_BY} ({s.RECALL}{{{_SCOPE}}})"

PANELS: Final[tuple[Panel, ...]] = (
    Panel(
        "Canary weight",
        "The canary's share of traffic as the router delivers it (0: no rollout). A "
        "rollback shows as a drop to 0 before 100.",
        "timeseries",
        "percent",
        (
            Target(
                f"max {by(s.WEIGHT_NAMESPACE, s.WEIGHT_NAME)} ({s.CANARY_WEIGHT}{{{_OBJECT}}})",
                _legend(s.WEIGHT_NAMESPACE, s.WEIGHT_NAME),
            ),
        ),
    ),
    Panel(
        "p95 latency by revision: stable vs canary",
        "Live queries (what clients see) and the probe replay (search time only), per "
        "serving revision; during a rollout the stable and the canary are two lines.",
        "timeseries",
        "ms",
        (
            Target(_p95_ms(_LIVE_SOURCE), REVISION_LEGEND + " live"),
            Target(_p95_ms(_PROBE_SOURCE), REVISION_LEGEND + " probe replay"),
        ),
    ),
    Panel(
        "Recall by revision",
        "Held-out probe replay (knn_recall_ratio) and sampled live queries checked by "
        "exact search, per serving revision.",
        "timeseries",
        "percentunit",
        (
            Target(_RECALL, REVISION_LEGEND + " probes"),
            Target(
                f"sum {REVISION_BY} (rate({s.LIVE_FOUND}{{{_SCOPE}}}[{RATE}]))\n"
                f"/\nsum {REVISION_BY} (rate({s.LIVE_EXPECTED}{{{_SCOPE}}}[{RATE}]))",
                REVISION_LEGEND + " live",
            ),
        ),
    ),
    Panel(
        "Queries per second by status code",
        "Every answered and refused query per revision and HTTP status (4xx: bad "
        "input, refused by a healthy server).",
        "timeseries",
        "reqps",
        (
            Target(
                f"sum {by(*s.REVISION, serving.LABEL_CODE)} "
                f"(rate({s.REQUESTS}{{{_SCOPE}}}[{RATE}]))",
                REVISION_LEGEND + " " + _legend(serving.LABEL_CODE),
            ),
        ),
    ),
    Panel(
        "Error rate (5xx share)",
        "5xx responses over all responses per revision; 0 when a revision with traffic has none.",
        "timeseries",
        "percentunit",
        (
            Target(
                # A revision without any 5xx series reads 0, not "no data".
                f"({_requests(serving.LABEL_CODE + '=~' + q('5..'))} or {_requests()} * 0)\n"
                f"/\n{_requests()}",
                REVISION_LEGEND,
            ),
        ),
    ),
    Panel(
        "Objects by phase",
        "KnnIndexes per phase as the operator sees them: Building is a build under way, "
        "Failed a build that failed with nothing serving.",
        "timeseries",
        "short",
        (
            Target(
                f"sum {by(s.PHASE)} ({s.OBJECTS}{{{s.KIND}={q(s.KNN_INDEX_KIND)}}})",
                _legend(s.PHASE),
            ),
        ),
    ),
    Panel(
        "Builds serving and their recall",
        "Each version that serves, with its build parameters (knn_index_info), its "
        "probe-replay recall and its size. Builds that never served (failed) are in "
        "the KnnIndex's status.builds and the phase panel.",
        "table",
        "percentunit",
        (
            Target(
                f"max without ({', '.join(_TARGET_LABELS)}) ({s.INDEX_INFO}{{{_SCOPE}}})\n"
                f"* on ({', '.join(s.REVISION)}) group_left ()\n{_RECALL}",
                REVISION_LEGEND,
                instant=True,
                column="recall",
            ),
            Target(
                f"max {REVISION_BY} ({s.INDEX_VECTORS}{{{_SCOPE}}})",
                REVISION_LEGEND,
                instant=True,
                column="vectors",
            ),
        ),
        width=24,
        height=6,
    ),
)


# --- the Grafana JSON model ---------------------------------------------------------------------

_DATASOURCE: Final = {"type": "prometheus", "uid": "${datasource}"}


def _variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": _DATASOURCE,
        "query": {"query": query, "refId": f"{name}-values"},
        "definition": query,
        "refresh": 2,  # on time-range change: new indexes appear without a reload
        "multi": True,
        "includeAll": True,
        "allValue": ALL,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def _panel(panel: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    targets = [
        {
            "refId": chr(ord("A") + i),
            "datasource": _DATASOURCE,
            "expr": t.expr,
            "legendFormat": t.legend,
            "instant": t.instant,
            "range": not t.instant,
            **({"format": "table"} if panel.kind == "table" else {}),
        }
        for i, t in enumerate(panel.targets)
    ]
    out: dict[str, Any] = {
        "id": pid,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": _DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": panel.width, "h": panel.height},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "targets": targets,
    }
    if panel.kind == "table":
        # One row per revision: the queries' columns joined on the revision's labels,
        # each query's value column named, target labels left out.
        names = {
            f"Value #{t['refId']}": p.column for t, p in zip(targets, panel.targets, strict=True)
        }
        hidden = {label: True for label in (*_TARGET_LABELS, *_HIDDEN_INFO, "__name__", "Time")}
        out["transformations"] = [
            {"id": "merge", "options": {}},
            {"id": "organize", "options": {"renameByName": names, "excludeByName": hidden}},
        ]
    return out


def _layout(panels: tuple[Panel, ...]) -> list[dict[str, Any]]:
    out, x, y, row_height = [], 0, 0, 0
    for pid, panel in enumerate(panels, start=1):
        if x + panel.width > 24:
            x, y, row_height = 0, y + row_height, 0
        out.append(_panel(panel, pid, x, y))
        x, row_height = x + panel.width, max(row_height, panel.height)
    return out


def dashboard() -> dict[str, Any]:
    scope = f'{s.INDEX_INFO}{{{serving.LABEL_NAMESPACE}=~"$namespace"}}'
    return {
        "uid": UID,
        "title": TITLE,
        "description": "Generated by `python -m knn_operator.crdgen` from "
        "operator/knn_operator/monitoring/dashboard.py.",
        "tags": ["knn-operator"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                },
                _variable(
                    "namespace",
                    "Namespace",
                    f"label_values({s.INDEX_INFO}, {serving.LABEL_NAMESPACE})",
                ),
                _variable("index", "Index", f"label_values({scope}, {serving.LABEL_INDEX})"),
            ]
        },
        "panels": _layout(PANELS),
    }


def substitute(expr: str, namespace: str = ALL, index: str = ALL, rate: str = "1m") -> str:
    """A panel's query as Grafana sends it, for given variable values (regexes)."""
    return (
        expr.replace("$namespace", namespace)
        .replace("$index", index)
        .replace("$__rate_interval", rate)
    )
