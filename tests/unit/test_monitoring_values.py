"""The chart's monitoring values agree with the generators: every alert setting has a
default in values.yaml and a schema in values.schema.json, and nothing else does."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from knn_operator.monitoring import alerts, dashboard, values

CHART = Path(__file__).resolve().parents[2] / "charts" / "knn-operator"


def test_values_yaml_sets_every_alert_setting_to_its_default() -> None:
    chart_values = yaml.safe_load((CHART / "values.yaml").read_text())
    rule = chart_values["prometheusRule"]
    assert rule["enabled"] is False, "off by default"
    assert rule["alerts"] == alerts.defaults()


def test_values_schema_holds_the_generated_fragment() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["properties"]["prometheusRule"] == values.prometheus_rule_schema(), (
        "values.schema.json's prometheusRule differs from "
        "knn_operator.monitoring.values.prometheus_rule_schema()"
    )


def test_every_alert_has_a_unique_name_and_key_and_its_settings_are_known() -> None:
    assert len({a.name for a in alerts.ALERTS}) == len(alerts.ALERTS)
    assert len({a.key for a in alerts.ALERTS}) == len(alerts.ALERTS)
    for a in alerts.ALERTS:
        assert {"for", "severity"} <= set(a.defaults) <= set(alerts.SETTINGS), a.name


def test_dashboard_values_and_schema() -> None:
    chart_values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert chart_values["dashboard"]["enabled"] is False, "off by default"
    assert chart_values["dashboard"]["labels"] == {"grafana_dashboard": "1"}
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["properties"]["dashboard"] == values.dashboard_schema()


def test_dashboard_panels_use_only_its_own_variables() -> None:
    model = dashboard.dashboard()
    names = {v["name"] for v in model["templating"]["list"]}
    assert names == {"datasource", "namespace", "index"}
    for panel in model["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used = set(re.findall(r"\$(\w+)", target["expr"]))
            assert used <= {"namespace", "index", "__rate_interval"}, (panel["title"], used)
    # Panels tile the 24-column grid without overlapping.
    cells: set[tuple[int, int]] = set()
    for panel in model["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & mine, panel["title"]
        cells |= mine


def test_the_monitoring_doc_lists_every_alert_and_panel() -> None:
    doc = (CHART.parents[1] / "docs" / "monitoring.md").read_text()
    for a in alerts.ALERTS:
        assert f"`{a.name}` | `{a.key}`" in doc, a.name
    assert "python -m knn_devtools.dashboard_png" in doc
