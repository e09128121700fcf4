"""The chart's monitoring values agree with the generators: every alert setting has a
default in values.yaml and a schema in values.schema.json, and nothing else does."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from knn_operator.monitoring import alerts, values

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
