"""The paired-ratio method of `make bench`: alternation, steal rejection, median."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench.paired import CpuTimes, measure, read_proc_stat, steal_fraction


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
