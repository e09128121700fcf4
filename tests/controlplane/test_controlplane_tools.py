"""helm and kubeconform, built from their Go modules, run and report the pinned versions."""

from __future__ import annotations

import subprocess

import pytest
from knn_devtools.tools import pinned_version, tool_path

pytestmark = pytest.mark.controlplane


def _run(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    return result.stdout.strip()


def test_helm_reports_pinned_version() -> None:
    out = _run(str(tool_path("helm")), "version", "--template", "{{ .Version }}")
    assert out == f"v{pinned_version('helm')}"


def test_kubeconform_reports_pinned_version() -> None:
    assert _run(str(tool_path("kubeconform")), "-v") == f"v{pinned_version('kubeconform')}"
