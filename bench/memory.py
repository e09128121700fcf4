"""Serving memory against the same index loaded by raw hnswlib (DESIGN section 6).

`python -m bench --only memory --n 1000000` builds the artifact, then measures:
raw hnswlib's `load_index` in a fresh interpreter (numpy and hnswlib imported,
nothing else); `knn-serve` with live recall off, then on after enough queries for
its exact scan to have read the mapped vectors; and `--workers 2`, summed over
its worker processes (RSS counts a shared page in each process, PSS splits it).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt
import orjson
from knn_contracts.artifact import Manifest
from knn_devtools.knnserve import serve

Rows = list[tuple[str, str]]
_RAW = """
import sys, hnswlib
from pathlib import Path
index = hnswlib.Index(space=sys.argv[2], dim=int(sys.argv[3]))
index.load_index(sys.argv[1], max_elements=int(sys.argv[4]))
print(Path("/proc/self/status").read_text())
"""


def _status_kib(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            out[name] = int(value.split()[0])
    return out


def process_kib(pid: int) -> dict[str, int]:
    """VmRSS, RssAnon, RssFile and Pss of one process, in KiB."""
    status = _status_kib(Path(f"/proc/{pid}/status").read_text())
    status["Pss"] = _status_kib(Path(f"/proc/{pid}/smaps_rollup").read_text())["Pss"]
    return status


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def raw_kib(artifact: Path, m: Manifest) -> dict[str, int]:
    space = {"l2": "l2", "ip": "ip", "cosine": "cosine"}[m.metric]
    argv = [str(artifact / "index.bin"), space, str(m.dimension), str(m.count)]
    out = subprocess.run(
        [sys.executable, "-c", _RAW, *argv], check=True, capture_output=True, text=True
    ).stdout
    return _status_kib(out)


def _mib(kib: int) -> str:
    return f"{kib / 1024:,.0f} MiB"


def _query(url: str, queries: npt.NDArray[np.float32], k: int, seconds: float) -> None:
    """Single queries for `seconds`: live recall samples 1% and scans once a second."""
    end = time.monotonic() + seconds
    with httpx.Client(base_url=url, timeout=60, trust_env=False) as c:
        i = 0
        while time.monotonic() < end:
            body = orjson.dumps({"vector": queries[i % len(queries)].tolist(), "k": k})
            c.post("/v1/query", content=body, headers={"content-type": "application/json"})
            i += 1


def memory_rows(
    args: argparse.Namespace, artifact: Path, logs: Path, queries: npt.NDArray[np.float32]
) -> Rows:
    m = Manifest.model_validate_json((artifact / "manifest.json").read_bytes())
    raw = raw_kib(artifact, m)
    flags = ["--log-level", "warning"]
    rows: Rows = [("raw hnswlib load_index: RSS", _mib(raw["VmRSS"]))]
    with serve(artifact, logs / "off", args=[*flags, "--live-recall-rate", "0"], timeout=600) as s:
        off = process_kib(s.child.pid)
    rows.append(
        (
            "knn-serve, 1 worker, live recall off: RSS (anonymous / file); **/ raw** "
            "(target <= 1.1)",
            f"{_mib(off['VmRSS'])} ({_mib(off['RssAnon'])} / {_mib(off['RssFile'])}); "
            f"**{off['VmRSS'] / raw['VmRSS']:.3f}**",
        )
    )
    with serve(artifact, logs / "on", args=flags, timeout=600) as s:
        _query(s.url, queries, args.k, 10.0)
        on = process_kib(s.child.pid)
    rows.append(
        (
            "knn-serve, 1 worker, live recall on (defaults), after 10 s of queries: RSS "
            "(anonymous / file); / raw",
            f"{_mib(on['VmRSS'])} ({_mib(on['RssAnon'])} / {_mib(on['RssFile'])}); "
            f"{on['VmRSS'] / raw['VmRSS']:.3f}",
        )
    )
    two = [*flags, "--workers", "2", "--live-recall-rate", "0"]
    with serve(artifact, logs / "two", args=two, timeout=600) as s:
        workers = [process_kib(p) for p in children(s.child.pid)]
        supervisor = process_kib(s.child.pid)
    rss = sum(w["VmRSS"] for w in workers) + supervisor["VmRSS"]
    pss = sum(w["Pss"] for w in workers) + supervisor["Pss"]
    rows.append(
        (
            f"knn-serve --workers 2 (live recall off): RSS / PSS of supervisor and "
            f"{len(workers)} workers; PSS / raw",
            f"{_mib(rss)} / {_mib(pss)}; {pss / raw['VmRSS']:.2f}",
        )
    )
    return rows
