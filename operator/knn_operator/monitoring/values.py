"""The chart values the monitoring templates read: their JSON Schema, which
values.schema.json must hold (a unit test compares), derived from the alerts'
settings so a new alert or setting cannot go unvalidated."""

from __future__ import annotations

from typing import Any, Final

from . import alerts

# Spliced into single-quoted YAML and into PromQL: no quote can get through.
DURATION: Final = {"type": "string", "pattern": "^([0-9]+(ms|s|m|h|d|w|y))+$"}
_SETTING: Final[dict[str, dict[str, Any]]] = {
    "threshold": {"type": "number", "minimum": 0},
    "window": DURATION,
    "for": DURATION,
    "severity": {"type": "string", "pattern": "^[A-Za-z0-9_.-]+$"},
}
_LABELS: Final = {"type": "object", "additionalProperties": {"type": "string"}}
# A Prometheus job label; no double quote (it is spliced into a PromQL string).
_JOB: Final = {"type": "string", "pattern": '^[^"\\\\]*$'}


def _alert(settings: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {name: _SETTING[name] for name in settings},
        "additionalProperties": False,
    }


def prometheus_rule_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "enabled": {"type": "boolean"},
            "labels": _LABELS,
            "operatorJob": _JOB,
            "servingJob": _JOB,
            "alerts": {
                "type": "object",
                "properties": {a.key: _alert(list(a.defaults)) for a in alerts.ALERTS},
                "additionalProperties": False,
            },
        },
        "additionalProperties": False,
    }


def dashboard_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "enabled": {"type": "boolean"},
            "namespace": {"type": "string"},
            "labels": _LABELS,
            "annotations": _LABELS,
        },
        "additionalProperties": False,
    }
