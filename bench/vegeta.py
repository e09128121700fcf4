"""Drive a server at a constant request rate with vegeta and read its report.

wrk is closed-loop: each connection waits for its answer, so it measures the
peak and the latency *at* the peak. Latency at a given load needs an open-loop
generator that keeps sending on schedule however slow the answers are (and adds
workers to do so); vegeta, built from its Go module like the other tools
(hack/build-tools.sh vegeta), is one.
"""

from __future__ import annotations

import base64
import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from knn_devtools.tools import tool_path


@dataclass(frozen=True)
class VegetaResult:
    rate: float  # requests/s actually sent
    throughput: float  # successful requests/s
    p50_ms: float
    p99_ms: float
    max_ms: float
    requests: int
    success: float  # fraction of 2xx answers
    errors: tuple[str, ...]


def targets(url: str, path: str, bodies: list[bytes], content_type: str) -> str:
    """vegeta's JSON target format, one request per line; it cycles through them."""
    lines = (
        json.dumps(
            {
                "method": "POST",
                "url": url + path,
                "header": {"Content-Type": [content_type]},
                "body": base64.b64encode(b).decode(),
            }
        )
        for b in bodies
    )
    return "\n".join(lines) + "\n"


def parse_report(doc: dict[str, object]) -> VegetaResult:
    lat = doc["latencies"]
    assert isinstance(lat, dict)
    errors = doc.get("errors") or []
    assert isinstance(errors, list)
    return VegetaResult(
        rate=float(doc["rate"]),  # type: ignore[arg-type]
        throughput=float(doc["throughput"]),  # type: ignore[arg-type]
        p50_ms=lat["50th"] / 1e6,
        p99_ms=lat["99th"] / 1e6,
        max_ms=lat["max"] / 1e6,
        requests=int(doc["requests"]),  # type: ignore[call-overload]
        success=float(doc["success"]),  # type: ignore[arg-type]
        errors=tuple(str(e) for e in errors),
    )


def run(
    url: str,
    path: str,
    bodies: list[bytes],
    *,
    rate: int,
    seconds: int,
    content_type: str = "application/json",
) -> VegetaResult:
    vegeta = str(tool_path("vegeta"))
    with tempfile.TemporaryDirectory() as d:
        t = Path(d) / "targets.json"
        t.write_text(targets(url, path, bodies, content_type))
        results = Path(d) / "results.bin"
        subprocess.run(
            [
                vegeta,
                "attack",
                "-format=json",
                f"-targets={t}",
                f"-rate={rate}/s",
                f"-duration={seconds}s",
                "-timeout=10s",
                f"-output={results}",
            ],
            check=True,
            timeout=seconds + 60,
        )
        report = subprocess.run(
            [vegeta, "report", "-type=json", str(results)],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    return parse_report(json.loads(report))
