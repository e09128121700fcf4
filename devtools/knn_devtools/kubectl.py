"""The real kubectl and helm, run against one kubeconfig; failures carry the tool's
own stderr."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from knn_devtools.tools import tool_path


class KubectlError(RuntimeError):
    def __init__(
        self,
        args: Sequence[str],
        returncode: int,
        stdout: str,
        stderr: str,
        tool: str = "kubectl",
    ) -> None:
        self.args_ = list(args)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(
            f"{tool} {' '.join(args)} failed with exit status {returncode}: {stderr.strip()}"
        )


class KubeTool:
    """A command-line tool that talks to the cluster of one kubeconfig."""

    tool = "kubectl"

    def __init__(self, kubeconfig: Path, *, binary: Path | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.binary = binary if binary is not None else tool_path(self.tool)

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        # kubectl's discovery cache lives in ~/.kube/cache by default; one per
        # kubeconfig keeps parallel clusters (random ports) from sharing stale data.
        env.setdefault("KUBECACHEDIR", str(self.kubeconfig.parent / ".kube-cache"))
        return env

    def run(
        self,
        *args: str,
        stdin: str | None = None,
        check: bool = True,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Runs the tool with ARGS; raises :class:`KubectlError` on failure when ``check``."""
        env = self.environment()
        result = subprocess.run(
            [str(self.binary), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise KubectlError(args, result.returncode, result.stdout, result.stderr, self.tool)
        return result


class Kubectl(KubeTool):
    def json(self, *args: str) -> Any:
        """Runs ``kubectl ARGS -o json`` and returns the decoded document."""
        return json.loads(self.run(*args, "-o", "json").stdout)

    def apply_manifest(self, manifest: str, *extra: str) -> subprocess.CompletedProcess[str]:
        """Server-side applies YAML given as text."""
        return self.run("apply", "--server-side", "-f", "-", *extra, stdin=manifest)


class Helm(KubeTool):
    """helm against the same kubeconfig, with its caches and settings beside it (not in
    the user's ~/.config/helm)."""

    tool = "helm"

    def environment(self) -> dict[str, str]:
        env = super().environment()
        home = self.kubeconfig.parent / ".helm"
        for var, sub in (("HELM_CACHE_HOME", "cache"), ("HELM_CONFIG_HOME", "config")):
            env.setdefault(var, str(home / sub))
        env.setdefault("HELM_DATA_HOME", str(home / "data"))
        return env
