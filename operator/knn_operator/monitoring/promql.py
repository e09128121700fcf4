"""PromQL text helpers shared by the alert rules and the dashboard. Pure."""

from __future__ import annotations

from typing import Final

from . import series as s


def q(value: str) -> str:
    """A PromQL double-quoted string (Go escaping)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def by(*labels: str) -> str:
    return f"by ({', '.join(labels)})"


REVISION_BY: Final = by(*s.REVISION)
