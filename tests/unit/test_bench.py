"""`make bench`'s pure parts: the paired-ratio method (alternation, steal
rejection, median), vegeta's target and report formats, the Chroma pin."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench import chroma, vegeta
from bench.paired import CpuTimes, measure, read_proc_stat, steady, steal_fraction


def sequence(values: list[float], log: list[str], name: str) -> Callable[[], float]:
    it: Iterator[float] = iter(values)

    def side() -> float:
        log.append(name)
        return next(it)

    return side


def clock(steals: list[int]) -> Callable[[], CpuTimes]:
    """Each call advances 100 jiffies; `steals` says how many of them were stolen."""
    state = {"steal": 0, "total": 0}
    it = iter(steals)

    def now() -> CpuTimes:
        state["steal"] += next(it, 0)
        state["total"] += 100
        return CpuTimes(state["steal"], state["total"])

    return now


def test_sides_alternate_so_neither_always_runs_first() -> None:
    log: list[str] = []
    r = measure(
        sequence([10, 10, 10, 10], log, "b"),
        sequence([5, 6, 7, 8], log, "c"),
        4,
        cpu_times=clock([]),
    )
    assert log == ["b", "c", "c", "b", "b", "c", "c", "b"]
    assert [p.ratio for p in r.pairs] == [0.5, 0.6, 0.7, 0.8]
    assert r.median == pytest.approx(0.65)


def test_one_wild_pair_does_not_move_the_median() -> None:
    r = measure(
        sequence([100, 100, 100], [], "b"),
        sequence([90, 5, 92], [], "c"),
        3,
        cpu_times=clock([]),
    )
    assert r.median == pytest.approx(0.90)
    assert "median of 3 pairs: 0.05, 0.90, 0.92" in r.describe()


def test_a_pair_with_high_steal_is_measured_again() -> None:
    # Calls to the clock: before/after baseline, before/after candidate, per pair.
    # Pair 0: the candidate side loses 40 of 100 jiffies to the hypervisor.
    steals = [0, 0, 0, 40] + [0] * 8
    r = measure(
        sequence([100, 100, 100], [], "b"),
        sequence([50, 95, 97], [], "c"),
        2,
        max_steal=0.05,
        cpu_times=clock(steals),
    )
    assert [p.candidate for p in r.pairs] == [95, 97]
    assert [p.attempt for p in r.pairs] == [1, 2]
    assert len(r.rejected) == 1 and r.rejected[0].steal == pytest.approx(0.4)
    assert "1 re-measured for steal up to 40%" in r.describe()


def test_gives_up_when_no_pair_is_clean() -> None:
    with pytest.raises(ValueError, match="steal"):
        measure(
            sequence([1.0] * 10, [], "b"),
            sequence([1.0] * 10, [], "c"),
            2,
            max_steal=0.05,
            max_attempts=3,
            cpu_times=clock([50] * 40),
        )


def test_steal_fraction_and_proc_stat(tmp_path: Path) -> None:
    assert steal_fraction(CpuTimes(0, 0), CpuTimes(0, 0)) == 0.0
    assert steal_fraction(CpuTimes(10, 100), CpuTimes(30, 300)) == pytest.approx(0.1)
    stat = tmp_path / "stat"
    stat.write_text("cpu  10 1 5 80 2 0 0 2 0 0\ncpu0 5 0 2 40 1 0 0 1 0 0\n")
    assert read_proc_stat(str(stat)) == CpuTimes(steal=2, total=100)
    assert read_proc_stat().total > 0  # this machine's own /proc/stat parses


def test_steady_repeats_noisy_runs_and_keeps_clean_ones() -> None:
    values = iter([1, 2, 3, 4])
    # Two clock calls per run; the second run loses 30 of 100 jiffies.
    kept = steady(lambda: next(values), 3, max_steal=0.05, cpu_times=clock([0, 0, 0, 30]))
    assert [v for v, _ in kept] == [1, 3, 4]


def test_vegeta_targets_and_report() -> None:
    lines = vegeta.targets("http://h:1", "/v1/query", [b'{"a":1}', b"\x00\xff"], "x/y").splitlines()
    first, second = (json.loads(line) for line in lines)
    assert first["url"] == "http://h:1/v1/query" and first["header"] == {"Content-Type": ["x/y"]}
    assert base64.b64decode(second["body"]) == b"\x00\xff"
    r = vegeta.parse_report(
        {
            "latencies": {"50th": 1_500_000, "99th": 4_000_000, "max": 9_000_000},
            "rate": 500.2,
            "throughput": 499.9,
            "requests": 5002,
            "success": 1,
            "errors": None,
        }
    )
    assert (r.p50_ms, r.p99_ms, r.max_ms, r.requests, r.errors) == (1.5, 4.0, 9.0, 5002, ())


def test_chroma_pin_is_read_from_its_constraints(tmp_path: Path) -> None:
    assert chroma.pinned_version() == chroma.pinned_version(chroma.CONSTRAINTS)
    f = tmp_path / "c.txt"
    f.write_text("anyio==4.0\nchromadb==9.9.9\n")
    assert chroma.pinned_version(f) == "9.9.9"
    f.write_text("anyio==4.0\n")
    with pytest.raises(RuntimeError, match="does not pin chromadb"):
        chroma.pinned_version(f)
