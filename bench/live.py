"""What live recall costs: single JSON queries with live recall at its defaults
against the same server with it off (`--live-recall-rate 0`), in alternating
pairs (paired.py), and the memory of both servers afterwards.

Two ratios: throughput, and queries per second of the server's own CPU time
(all its threads, from /proc). On a contended 2-core machine (wrk shares it) the
throughput ratio swings by tens of percent between pairs; CPU per query is what
live recall adds, and it moves far less with the machine's other load."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from knn_devtools.knnserve import KnnServe, serve
from knn_serving.serve.live import LiveSettings

from . import paired

Rows = list[tuple[str, str]]


def _rss_kib(pid: int) -> tuple[int, int]:
    """(anonymous, file-backed) resident KiB of a process."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.split()[0] if value.split() else "0"
    return int(fields.get("RssAnon", 0)), int(fields.get("RssFile", 0))


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _per_cpu_second(pid: int, load: Callable[[], float], seconds: int) -> Callable[[], float]:
    """Queries answered per CPU-second of the server process, for one measured run."""

    def run() -> float:
        before = _cpu_seconds(pid)
        qps = load()
        return qps * seconds / max(_cpu_seconds(pid) - before, 1e-9)

    return run


def _counter(server: KnnServe, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in server.metrics_text().splitlines()
        if line.startswith(f"knn_live_recall_{name}_total{{")
    )


def live_rows(
    args: argparse.Namespace,
    artifact: Path,
    logs: Path,
    loader_for: Callable[[str], Callable[[], float]],
) -> Rows:
    common = ["--log-level", "warning", "--workers", "1", "--batch-threads", "1"]
    on_args = [*common]  # live recall at its defaults
    off_args = [*common, "--live-recall-rate", "0"]
    with (
        serve(artifact, logs / "live-on", args=on_args, timeout=120) as on,
        serve(artifact, logs / "live-off", args=off_args, timeout=120) as off,
    ):
        r = paired.measure(
            loader_for(off.url), loader_for(on.url), args.rounds, max_steal=args.max_steal
        )
        cpu = paired.measure(
            _per_cpu_second(off.child.pid, loader_for(off.url), args.seconds),
            _per_cpu_second(on.child.pid, loader_for(on.url), args.seconds),
            args.rounds,
            max_steal=args.max_steal,
        )
        samples, dropped = _counter(on, "samples"), _counter(on, "dropped")
        found, expected = _counter(on, "found"), _counter(on, "expected")
        on_anon, on_file = _rss_kib(on.child.pid)
        off_anon, off_file = _rss_kib(off.child.pid)
    d = LiveSettings()
    return [
        (
            f"live recall on (rate {d.rate}, cpu {d.cpu_budget}): samples checked / dropped; "
            "live recall",
            f"{samples:,.0f} / {dropped:,.0f}; {found / max(expected, 1):.4f}",
        ),
        (
            "RSS anonymous / file-backed, live recall on vs off",
            f"{on_anon / 1024:,.0f} / {on_file / 1024:,.0f} MiB vs "
            f"{off_anon / 1024:,.0f} / {off_file / 1024:,.0f} MiB",
        ),
        ("**live recall on / off, single JSON queries** (goal >= 0.97)", f"**{r.describe()}**"),
        (
            "**live recall on / off, queries per server CPU-second** (goal >= 0.97)",
            f"**{cpu.describe()}**",
        ),
    ]
