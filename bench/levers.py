"""A serving lever measured against the code it replaces, on the same machine, in one run.

`python -m bench --only levers --baseline-ref main` serves one artifact twice: with
this checkout's knn-serve (candidate) and with the serving code of a git ref
(baseline, `git archive` into a temporary directory, put first on PYTHONPATH of
the same interpreter). Raw single-thread hnswlib, the baseline and the candidate
take turns (the order alternates each round) under the same wrk load of single
JSON queries. Per round: each server's throughput over raw hnswlib's, and its
CPU-seconds per query (all its threads, /proc), which moves far less than
throughput on a shared machine. The load average is printed beside each round.

`--cores 0` pins both servers to one core (taskset), for the scaling curve;
`--candidate-flags "--workers 2"` adds flags to the candidate only. Then both take
turns at a constant rate of half the baseline's peak (vegeta), for the p99 there.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import hnswlib
import numpy as np
import numpy.typing as npt
import orjson
from knn_devtools.knnserve import KnnServe, serve

from . import vegeta, wrk
from .live import _cpu_seconds

Rows = list[tuple[str, str]]
ROOT = Path(__file__).resolve().parents[1]


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@contextmanager
def code_of(ref: str) -> Iterator[Path]:
    """The serving and contracts packages of git `ref`, unpacked in a temporary dir."""
    with tempfile.TemporaryDirectory(prefix="knn-bench-ref-") as d:
        archive = Path(d) / "code.tar"
        subprocess.run(
            ["git", "-C", str(ROOT), "archive", "-o", str(archive), ref, "serving", "contracts"],
            check=True,
        )
        with tarfile.open(archive) as t:
            t.extractall(d, filter="data")
        yield Path(d)


def pythonpath(code: Path) -> dict[str, str]:
    return {"PYTHONPATH": f"{code / 'serving'}:{code / 'contracts'}"}


def pin(pid: int, cores: str) -> None:
    """Every thread of `pid` (the search and live-recall threads exist once it is ready)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        subprocess.run(["taskset", "-pc", cores, task.name], check=True, stdout=subprocess.DEVNULL)


@dataclass
class Side:
    """One server's runs: requests/s and CPU microseconds per request."""

    name: str
    server: KnnServe | None  # None: raw hnswlib in this process
    qps: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)


def tree_cpu_seconds(pid: int) -> float:
    """CPU-seconds of `pid` and its children (the workers of --workers N)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return _cpu_seconds(pid) + sum(tree_cpu_seconds(int(c)) for c in children)


def run_server(side: Side, bodies: list[bytes], args: argparse.Namespace) -> None:
    assert side.server is not None
    pid = side.server.child.pid
    before = tree_cpu_seconds(pid)
    r = wrk.run(
        side.server.url, "/v1/query", bodies, connections=args.connections, seconds=args.seconds
    )
    if r.non_2xx or r.errors:
        raise SystemExit(f"wrk against {side.name}: {r.non_2xx} non-2xx; {r.error_detail}")
    side.qps.append(r.requests_per_second)
    side.cpu_us.append((tree_cpu_seconds(pid) - before) / max(r.requests, 1) * 1e6)
    side.p99_ms.append(r.p99_ms)


def raw_single(index: hnswlib.Index, queries: npt.NDArray[np.float32], k: int, s: int) -> float:
    from .__main__ import qps_single  # __main__ imports this module

    return qps_single(index, queries, k, s)


def lever_rows(
    args: argparse.Namespace,
    artifact: Path,
    logs: Path,
    index: hnswlib.Index,
    load: npt.NDArray[np.float32],
) -> Rows:
    bodies = [orjson.dumps({"vector": q.tolist(), "k": args.k}) for q in load]
    flags = ["--log-level", "warning", "--workers", "1", "--batch-threads", "1"]
    raw = Side("raw hnswlib", None)
    with ExitStack() as stack:
        code = stack.enter_context(code_of(args.baseline_ref))
        base = Side(
            f"knn-serve at {args.baseline_ref}",
            stack.enter_context(
                serve(artifact, logs / "base", args=flags, env=pythonpath(code), timeout=120)
            ),
        )
        extra = args.candidate_flags.split()
        cand = Side(
            f"knn-serve (this checkout{', ' if extra else ''}{' '.join(extra)})",
            stack.enter_context(serve(artifact, logs / "cand", args=[*flags, *extra], timeout=120)),
        )
        for s in (base, cand):
            if args.cores and s.server is not None:
                pin(s.server.child.pid, args.cores)
        for i in range(args.rounds):
            order = [raw, base, cand] if i % 2 == 0 else [cand, base, raw]
            for side in order:
                if side.server is None:
                    side.qps.append(raw_single(index, load, args.k, args.seconds))
                else:
                    run_server(side, bodies, args)
            print(
                f"levers round {i}: raw {raw.qps[-1]:,.0f}, baseline {base.qps[-1]:,.0f} "
                f"({base.cpu_us[-1]:.0f} us CPU/query), candidate {cand.qps[-1]:,.0f} "
                f"({cand.cpu_us[-1]:.0f} us CPU/query); load average {load_average()}",
                flush=True,
            )
        half = _half_peak(args, bodies, base, cand)
    return [*_rows(args, raw, base, cand), half]


def _half_peak(
    args: argparse.Namespace, bodies: list[bytes], base: Side, cand: Side
) -> tuple[str, str]:
    """p99 of both servers at half the baseline's peak, constant rate, alternating."""
    rate = max(1, int(statistics.median(base.qps) / 2))
    p99: dict[str, list[float]] = {base.name: [], cand.name: []}
    failed = {base.name: 0, cand.name: 0}
    for i in range(args.rounds):
        for side in (base, cand) if i % 2 == 0 else (cand, base):
            assert side.server is not None
            r = vegeta.run(
                side.server.url, "/v1/query", bodies, rate=rate, seconds=2 * args.seconds
            )
            if r.success < 1.0:  # reported, not fatal: a stalled host times requests out
                failed[side.name] += r.requests - round(r.success * r.requests)
                print(f"vegeta against {side.name}: {', '.join(r.errors)}", flush=True)
            p99[side.name].append(r.p99_ms)
        print(
            f"levers half-peak round {i}: p99 {p99[base.name][-1]:.2f} / "
            f"{p99[cand.name][-1]:.2f} ms; load average {load_average()}",
            flush=True,
        )
    b, c = (sorted(p99[s.name]) for s in (base, cand))

    def each(xs: list[float]) -> str:
        return ", ".join(f"{x:.1f}" for x in xs)

    return (
        f"p99 at {rate:,} req/s constant (half the baseline's peak; vegeta, "
        f"{2 * args.seconds}-s runs), baseline / candidate",
        f"**{statistics.median(b):.2f} / {statistics.median(c):.2f} ms** "
        f"(baseline {each(b)}; candidate {each(c)}); requests failed (vegeta's 10-s "
        f"timeout) {failed[base.name]} / {failed[cand.name]}",
    )


def _rows(args: argparse.Namespace, raw: Side, base: Side, cand: Side) -> Rows:
    med = statistics.median

    def ratios(a: list[float], b: list[float]) -> str:
        each = sorted(x / y for x, y in zip(a, b, strict=True))
        return f"{med(each):.2f} ({', '.join(f'{r:.2f}' for r in each)})"

    where = f"pinned to CPU {args.cores}" if args.cores else "all CPUs"
    rows: Rows = [("raw hnswlib single queries, 1 thread", f"{med(raw.qps):,.0f} q/s")]
    for s in (base, cand):
        rows.append(
            (
                f"{s.name}, single JSON, {where}",
                f"{med(s.qps):,.0f} q/s, {ratios(s.qps, raw.qps)} of raw; "
                f"{med(s.cpu_us):.0f} us CPU per query; p99 {med(s.p99_ms):.1f} ms (wrk)",
            )
        )
    rows.append(
        (
            f"**candidate / baseline** ({args.rounds} rounds)",
            f"**throughput {ratios(cand.qps, base.qps)}; CPU per query "
            f"{ratios(cand.cpu_us, base.cpu_us)}**",
        )
    )
    return rows
