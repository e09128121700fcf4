"""Ratios measured in alternating pairs, so the machine's drift cancels out.

On a shared VM the speed of a core wanders by ±20% over seconds, and the
hypervisor at times takes a large share of the CPU away ("steal"). Measuring the
whole baseline first and the whole candidate later lets that land on one side
only. Here each round runs both sides back to back (alternating which goes
first), a round during which the VM lost more than `max_steal` of its CPU time
is measured again, and the result is the median of the per-round ratios, which
one noisy round cannot move.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class CpuTimes:
    """Cumulative jiffies of the whole machine: time stolen and all time."""

    steal: int
    total: int


def steal_fraction(before: CpuTimes, after: CpuTimes) -> float:
    elapsed = after.total - before.total
    return (after.steal - before.steal) / elapsed if elapsed > 0 else 0.0


def read_proc_stat(path: str = "/proc/stat") -> CpuTimes:
    with open(path) as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is inside user)
    return CpuTimes(steal=fields[7] if len(fields) > 7 else 0, total=sum(fields[:8]))


def with_steal(
    fn: Callable[[], T], cpu_times: Callable[[], CpuTimes] = read_proc_stat
) -> tuple[T, float]:
    """fn's result and the share of the machine's CPU time stolen while it ran."""
    before = cpu_times()
    value = fn()
    return value, steal_fraction(before, cpu_times())


def steady(
    fn: Callable[[], T],
    runs: int,
    *,
    max_steal: float,
    cpu_times: Callable[[], CpuTimes] = read_proc_stat,
) -> list[tuple[T, float]]:
    """`runs` results of fn, each from a run with at most `max_steal` stolen;
    a noisier run is repeated, up to 3 * runs attempts in all."""
    kept: list[tuple[T, float]] = []
    worst = 0.0
    for _ in range(3 * runs):
        if len(kept) == runs:
            return kept
        value, steal = with_steal(fn, cpu_times)
        if steal <= max_steal:
            kept.append((value, steal))
        worst = max(worst, steal)
    if not kept:
        raise TooNoisyError(
            f"every run lost up to {worst:.0%} of the CPU to the hypervisor (steal); "
            "run on a quieter machine or raise --max-steal"
        )
    return kept


@dataclass(frozen=True)
class Pair:
    attempt: int  # the how-manieth call of each side produced this pair
    baseline: float
    candidate: float
    steal: float  # the larger of the two sides' steal fractions

    @property
    def ratio(self) -> float:
        return self.candidate / self.baseline


class TooNoisyError(ValueError):
    """Every attempted pair lost too much CPU time to the hypervisor."""


@dataclass(frozen=True)
class PairedRatio:
    pairs: tuple[Pair, ...]
    rejected: tuple[Pair, ...] = ()

    def __post_init__(self) -> None:
        if not self.pairs:
            worst = min((p.steal for p in self.rejected), default=0.0)
            raise TooNoisyError(
                f"all {len(self.rejected)} pairs lost at least {worst:.0%} of the CPU to "
                "the hypervisor (steal); run on a quieter machine or raise --max-steal"
            )
        if min(p.baseline for p in self.pairs) <= 0:
            raise ValueError("a baseline run measured no throughput")

    @property
    def median(self) -> float:
        return statistics.median(p.ratio for p in self.pairs)

    @property
    def baseline(self) -> float:
        return statistics.median(p.baseline for p in self.pairs)

    @property
    def candidate(self) -> float:
        return statistics.median(p.candidate for p in self.pairs)

    def describe(self) -> str:
        spread = ", ".join(f"{p.ratio:.2f}" for p in sorted(self.pairs, key=lambda p: p.ratio))
        text = f"{self.median:.2f} (median of {len(self.pairs)} pairs: {spread}"
        if self.rejected:
            worst = max(p.steal for p in self.rejected)
            text += f"; {len(self.rejected)} re-measured for steal up to {worst:.0%}"
        return text + ")"


def measure(
    baseline: Callable[[], float],
    candidate: Callable[[], float],
    rounds: int,
    *,
    max_steal: float = 1.0,
    max_attempts: int | None = None,
    cpu_times: Callable[[], CpuTimes] = read_proc_stat,
) -> PairedRatio:
    """`rounds` pairs of throughput measurements (higher is better), each pair
    kept only if the VM's steal during either side stayed at or under `max_steal`."""
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    attempts = max_attempts if max_attempts is not None else 3 * rounds

    def run(side: Callable[[], float]) -> tuple[float, float]:
        return with_steal(side, cpu_times)

    kept: list[Pair] = []
    rejected: list[Pair] = []
    for i in range(attempts):
        if len(kept) == rounds:
            break
        if i % 2 == 0:
            (b, sb), (c, sc) = run(baseline), run(candidate)
        else:
            (c, sc), (b, sb) = run(candidate), run(baseline)
        pair = Pair(i, b, c, max(sb, sc))
        (kept if pair.steal <= max_steal else rejected).append(pair)
    return PairedRatio(tuple(kept), tuple(rejected))
