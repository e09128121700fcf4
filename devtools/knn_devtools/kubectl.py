"""The real kubectl, run against one kubeconfig; failures carry kubectl's own stderr."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from knn_devtools.tools import tool_path


class KubectlError(RuntimeError):
    def __init__(self, args: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.args_ = list(args)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(
            f"kubectl {' '.join(args)} failed with exit status {returncode}: {stderr.strip()}"
        )


class Kubectl:
    def __init__(self, kubeconfig: Path, *, binary: Path | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.binary = binary if binary is not None else tool_path("kubectl")

    def run(
        self,
        *args: str,
        stdin: str | None = None,
        check: bool = True,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Runs ``kubectl ARGS``; raises :class:`KubectlError` on failure when ``check``."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        # kubectl's discovery cache lives in ~/.kube/cache by default; one per
        # kubeconfig keeps parallel clusters (random ports) from sharing stale data.
        env.setdefault("KUBECACHEDIR", str(self.kubeconfig.parent / ".kube-cache"))
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
            raise KubectlError(args, result.returncode, result.stdout, result.stderr)
        return result

    def json(self, *args: str) -> Any:
        """Runs ``kubectl ARGS -o json`` and returns the decoded document."""
        return json.loads(self.run(*args, "-o", "json").stdout)

    def apply_manifest(self, manifest: str, *extra: str) -> subprocess.CompletedProcess[str]:
        """Server-side applies YAML given as text."""
        return self.run("apply", "--server-side", "-f", "-", *extra, stdin=manifest)
