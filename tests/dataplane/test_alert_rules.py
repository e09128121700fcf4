"""The chart's alert rules, as `helm template` renders them, through Debian's promtool:
`promtool check rules` is clean, and `promtool test rules` shows every alert firing on
series that breach it and silent on healthy ones (alert_cases.py), with the chart's
default settings and with ci/prometheusrule-values.yaml's.

Needs promtool (Debian's `prometheus` package, `make install`) and the pinned helm;
without them the tests fail, they do not skip.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from knn_devtools.tools import REPO_ROOT, tool_path
from knn_operator.monitoring import alerts

if TYPE_CHECKING:
    from tests.dataplane import alert_cases as ac
    from tests.dataplane import servers as sv
else:
    import alert_cases as ac
    import servers as sv

pytestmark = pytest.mark.prometheus

CHART = REPO_ROOT / "charts" / "knn-operator"
CI_VALUES = CHART / "ci" / "prometheusrule-values.yaml"
RELEASE, NAMESPACE = "knn-operator", "monitoring"
# The defaults, with what the rules watch switched on.
DEFAULTS = (
    "prometheusRule.enabled=true",
    "metrics.serviceMonitor.enabled=true",
    "servingPodMonitor.enabled=true",
)
VARIANTS = {"defaults": ((), DEFAULTS), "ci": ((CI_VALUES,), ())}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class Rendered:
    """One `helm template` of the chart: its rule file, its settings, its targets' jobs."""

    def __init__(self, files: tuple[Path, ...], sets: tuple[str, ...], workdir: Path) -> None:
        args = [a for f in files for a in ("-f", str(f))] + [a for x in sets for a in ("--set", x)]
        out = subprocess.run(
            [str(tool_path("helm")), "template", RELEASE, str(CHART), "-n", NAMESPACE, *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        docs = [d for d in yaml.safe_load_all(out.stdout) if d]
        (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
        self.rule_file = workdir / "rules.yml"
        self.rule_file.write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
        (group,) = rule["spec"]["groups"]
        self.rules: dict[str, dict[str, Any]] = {r["alert"]: r for r in group["rules"]}
        values = yaml.safe_load((CHART / "values.yaml").read_text())
        for f in files:
            values = _merge(values, yaml.safe_load(f.read_text()))
        self.settings: dict[str, dict[str, Any]] = values["prometheusRule"]["alerts"]
        # The job labels the chart's own ServiceMonitor and PodMonitor give their targets.
        (service,) = [d for d in docs if d["kind"] == "Service"]
        (pod_monitor,) = [d for d in docs if d["kind"] == "PodMonitor"]
        meta = pod_monitor["metadata"]
        self.jobs = {
            "operator": service["metadata"]["name"],
            "serving": f"{meta['namespace']}/{meta['name']}",
        }


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    binary = sv.require_command("promtool")
    return subprocess.run(
        [str(binary), *map(str, args)], capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture(params=sorted(VARIANTS), scope="module")
def rendered(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    files, sets = VARIANTS[request.param]
    return Rendered(files, sets, tmp_path_factory.mktemp(f"rules-{request.param}"))


def test_the_chart_renders_every_alert_with_its_settings(rendered: Rendered) -> None:
    assert list(rendered.rules) == [a.name for a in alerts.ALERTS]
    for a in alerts.ALERTS:
        rule = rendered.rules[a.name]
        assert rule["for"] == rendered.settings[a.key]["for"], a.name
        assert rule["labels"]["severity"] == rendered.settings[a.key]["severity"], a.name
        assert "{{ .Values" not in rule["expr"] + str(rule["annotations"]), a.name


def test_promtool_check_rules_is_clean(rendered: Rendered) -> None:
    out = promtool("check", "rules", rendered.rule_file)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(alerts.ALERTS)} rules found" in out.stdout, out.stdout
    assert "WARNING" not in (out.stdout + out.stderr).upper(), out.stdout + out.stderr


def _write_tests(rendered: Rendered, cases: list[ac.Case], path: Path) -> Path:
    doc = ac.promtool_tests(str(rendered.rule_file), rendered.rules, cases)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_every_alert_fires_on_a_breach_and_stays_silent_when_healthy(
    rendered: Rendered, tmp_path: Path
) -> None:
    cases = ac.cases(rendered.settings, rendered.jobs)
    for a in alerts.ALERTS:
        mine = [c for c in cases if c.alert == a.name]
        assert any(c.fires for c in mine), f"{a.name}: no case where it fires"
        assert any(not c.fires for c in mine), f"{a.name}: no case where it stays silent"
    out = promtool("test", "rules", _write_tests(rendered, cases, tmp_path / "tests.yml"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout, out.stdout


def test_a_wrong_expectation_fails_promtool(rendered: Rendered, tmp_path: Path) -> None:
    """The harness can fail: each case with its expectation flipped (a firing case
    expected silent, a silent one expected to fire) fails."""
    flipped = [
        ac.Case(c.alert, c.title, c.series, c.at, [] if c.fires else [{"unexpected": "yes"}])
        for c in ac.cases(rendered.settings, rendered.jobs)
    ]
    out = promtool("test", "rules", _write_tests(rendered, flipped, tmp_path / "flipped.yml"))
    assert out.returncode != 0, out.stdout
    failures = out.stdout + out.stderr
    for c in flipped:
        assert f"{c.alert}: {c.title}" in failures, f"flipped case passed: {c.alert}: {c.title}"
