"""How a rule's settings, target jobs and series labels become text: Helm expressions
for the chart's file, or literal values (tests, other tools). Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol


class Render(Protocol):
    """Text spliced into a rule for a setting, a target's job, or a series label."""

    def setting(self, key: str, name: str) -> str: ...

    def job(self, which: str) -> str: ...

    def label(self, name: str) -> str: ...


VALUES_KEY: Final = "prometheusRule"


class HelmRender:
    """Settings as `.Values.prometheusRule.alerts.<key>.<name>`, jobs from the chart's
    helpers, Prometheus' label templates escaped from Helm's `tpl`."""

    def setting(self, key: str, name: str) -> str:
        return f"{{{{ .Values.{VALUES_KEY}.alerts.{key}.{name} }}}}"

    def job(self, which: str) -> str:
        return f'{{{{ include "knn-operator.alerts.{which}Job" . }}}}'

    def label(self, name: str) -> str:
        return f"{{{{`{{{{ $labels.{name} }}}}`}}}}"


@dataclass(frozen=True)
class LiteralRender:
    """Settings and jobs as given; labels as Prometheus templates."""

    settings: Mapping[str, Mapping[str, Any]]
    jobs: Mapping[str, str]

    def setting(self, key: str, name: str) -> str:
        return str(self.settings[key][name])

    def job(self, which: str) -> str:
        return self.jobs[which]

    def label(self, name: str) -> str:
        return f"{{{{ $labels.{name} }}}}"
