"""Drive a server with wrk (Debian's package) and parse its summary."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


@dataclass(frozen=True)
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    errors: int
    error_detail: str = ""  # wrk's own "Socket errors" line, when it printed one


def _seconds(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"unparsed wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _lua(bodies: list[bytes], content_type: str, path: str) -> str:
    def lit(b: bytes) -> str:
        # Long brackets would turn \r\n into \n inside binary bodies: escape instead.
        keep = set(range(0x20, 0x7F)) - {ord('"'), ord("\\")}
        return '"' + "".join(chr(c) if c in keep else f"\\{c:03d}" for c in b) + '"'

    items = ",\n".join(lit(b) for b in bodies)
    return f"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "{content_type}"
local bodies = {{
{items}
}}
local n = #bodies
local i = 0
request = function()
  i = i % n + 1
  return wrk.format(nil, "{path}", nil, bodies[i])
end
"""


def run(
    url: str,
    path: str,
    bodies: list[bytes],
    *,
    content_type: str = "application/json",
    connections: int = 8,
    seconds: int = 10,
    threads: int = 1,
) -> WrkResult:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed; run `make system-deps` (Debian package wrk)")
    with tempfile.TemporaryDirectory() as d:
        script = Path(d) / "post.lua"
        script.write_text(_lua(bodies, content_type, path))
        out = subprocess.run(
            [
                wrk,
                f"-t{threads}",
                f"-c{connections}",
                f"-d{seconds}s",
                "--latency",
                # wrk's default of 2 s counts a request held up by a stalled VM as
                # an error; the latency percentiles still show such stalls.
                "--timeout",
                "10s",
                "-s",
                str(script),
                url,
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=seconds + 30,
        ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _seconds(re.search(r"^\s*50%\s+(\S+)\s*$", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _seconds(re.search(r"^\s*99%\s+(\S+)\s*$", out, re.M).group(1))  # type: ignore[union-attr]
    reqs = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx_m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    err_m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = sum(int(x) for x in err_m.groups()) if err_m else 0
    return WrkResult(
        rps,
        p50 * 1e3,
        p99 * 1e3,
        reqs,
        int(non2xx_m.group(1)) if non2xx_m else 0,
        errors,
        err_m.group(0) if err_m else "",
    )
