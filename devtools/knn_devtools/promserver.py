"""A real Prometheus on loopback scraping jobs whose targets can change while it runs
(file-based discovery), with range queries: what knn_devtools.dashboard_run needs.

The tests' own helper (tests/dataplane/servers.Prometheus) does more (TLS, basic
auth); this one is for devtools, which cannot import tests.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from knn_devtools.procs import ManagedProcess, log_files, start_on_free_port

LOOPBACK = "127.0.0.1"


class PrometheusError(RuntimeError):
    """Prometheus refused a query or did not start."""


class Prometheus:
    def __init__(
        self, binary: Path, workdir: Path, jobs: Sequence[str], scrape_interval: str = "1s"
    ) -> None:
        self.binary, self.workdir, self.jobs = binary, workdir, list(jobs)
        self.scrape_interval = scrape_interval
        self.port = 0
        self._child: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def _targets_file(self, job: str) -> Path:
        return self.workdir / f"targets-{job}.json"

    def set_targets(self, job: str, targets: Sequence[str]) -> None:
        """Replaced atomically; Prometheus rereads the file within a second."""
        path = self._targets_file(job)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps([{"targets": list(targets)}]) + "\n")
        tmp.replace(path)

    def _config(self) -> dict[str, Any]:
        every = self.scrape_interval
        return {
            "global": {"scrape_interval": every, "evaluation_interval": every},
            "scrape_configs": [
                {
                    "job_name": job,
                    # The servers' and the operator's own namespace/index/version labels win.
                    "honor_labels": True,
                    "scrape_timeout": every,
                    "file_sd_configs": [
                        {"files": [str(self._targets_file(job))], "refresh_interval": "1s"}
                    ],
                }
                for job in self.jobs
            ],
        }

    def start(self, timeout: float = 60.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for job in self.jobs:
            if not self._targets_file(job).exists():
                self.set_targets(job, [])
        config = self.workdir / "prometheus.yml"
        config.write_text(json.dumps(self._config(), indent=2) + "\n")

        def spawn(port: int) -> ManagedProcess:
            self.port = port
            out, err = log_files(self.workdir / "logs", "prometheus")
            self._child = ManagedProcess(
                "prometheus",
                [
                    str(self.binary),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                    f"--web.listen-address={LOOPBACK}:{port}",
                    "--log.level=warn",
                ],
                out,
                stderr_path=err,
                death_signal=signal.SIGTERM,
            )
            return self._child

        def ready(child: ManagedProcess) -> None:
            child.wait_until("/-/ready", self._ready, timeout, 0.1)

        start_on_free_port(spawn, ready, stop_timeout=15.0)

    def _ready(self) -> bool:
        try:
            with httpx.Client(base_url=self.url, timeout=2.0, trust_env=False) as c:
                return c.get("/-/ready").status_code == 200
        except httpx.TransportError:
            return False

    def api(self, path: str, params: Mapping[str, str | float]) -> Any:
        with httpx.Client(base_url=self.url, timeout=30.0, trust_env=False) as c:
            r = c.get(path, params=dict(params))
        body = r.json()
        if r.status_code != 200 or body.get("status") != "success":
            raise PrometheusError(f"{path} {dict(params)}: HTTP {r.status_code} {body}")
        return body["data"]

    def stop(self) -> None:
        if self._child is not None:
            self._child.stop(30.0)
