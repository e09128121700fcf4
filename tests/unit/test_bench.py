"""`make bench`'s pure parts: the paired-ratio method (alternation, steal
rejection, median), vegeta's target and report formats, the Chroma pin."""

from __future__ import annotations

import argparse
import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench import chroma, milvus, operator_scale, vegeta
from bench.memory import _status_kib
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


# -- operator scale (bench/operator_scale.py): verdicts, metrics arithmetic, report --

WAIT = "apiserver_flowcontrol_request_wait_duration_seconds"
LOW = 'execute="true",flow_schema="service-accounts",priority_level="workload-low"'


def apiserver_metrics(
    requests: dict[str, int], under_100ms: int, waits: int, wait_sum: float, rejected: int
) -> str:
    """A kube-apiserver /metrics excerpt: requests by labels, one APF priority level."""
    lines = ["# TYPE apiserver_request_total counter"]
    lines += [f"apiserver_request_total{{{labels}}} {n}" for labels, n in requests.items()]
    lines += [
        f"# TYPE {WAIT} histogram",
        f'{WAIT}_bucket{{{LOW},le="0.1"}} {under_100ms}',
        f'{WAIT}_bucket{{{LOW},le="+Inf"}} {waits}',
        f"{WAIT}_sum{{{LOW}}} {wait_sum}",
        f"{WAIT}_count{{{LOW}}} {waits}",
        "# TYPE apiserver_flowcontrol_rejected_requests_total counter",
        "apiserver_flowcontrol_rejected_requests_total"
        f'{{priority_level="workload-low",reason="queue-full"}} {rejected}',
        "# TYPE apiserver_flowcontrol_nominal_limit_seats gauge",
        'apiserver_flowcontrol_nominal_limit_seats{priority_level="workload-low"} 245',
    ]
    return "\n".join(lines) + "\n"


GET_200 = 'code="200",resource="knnindexes",verb="GET"'
APPLY_JOBS = 'code="200",resource="jobs",verb="APPLY"'
WATCH = 'code="200",resource="knnindexes",verb="WATCH"'
APISERVER_BEFORE = apiserver_metrics({GET_200: 10, APPLY_JOBS: 5, WATCH: 2}, 10, 10, 0.5, 0)
APISERVER_AFTER = apiserver_metrics(
    {
        GET_200: 40,
        'code="404",resource="knnindexes",verb="GET"': 2,
        APPLY_JOBS: 15,
        'code="200",resource="knnindexes",subresource="status",verb="APPLY"': 10,
        WATCH: 3,
    },
    16,
    20,
    2.5,
    1,
)


def test_verdict_needs_a_value_under_the_target() -> None:
    assert operator_scale.verdict(59.9, 60.0) == "met"
    assert operator_scale.verdict(60.0, 60.0) == "not met"
    assert operator_scale.verdict(None, 60.0) == "not met"
    assert operator_scale.verdict(299_000_000, operator_scale.TARGET_RSS_BYTES) == "met"


def test_times_and_sizes_read_as_in_the_docs() -> None:
    assert operator_scale.seconds(47.25, 0, 5000, 0) == "47.2 s"
    assert operator_scale.seconds(None, 4321, 5000, 600.4) == (
        "not reached: 4,321 of 5,000 after 600 s"
    )
    assert operator_scale.megabytes(443_000_000) == "443 MB (422 MiB)"


def test_quantile_is_nearest_rank_and_chunks_cover_everything() -> None:
    values = [float(v) for v in range(1, 101)]
    assert operator_scale.quantile(values, 0.5) == 50.0
    assert operator_scale.quantile(values, 0.99) == 99.0
    assert operator_scale.quantile(values, 1.0) == 100.0
    assert operator_scale.quantile([3.0], 0.01) == 3.0
    with pytest.raises(ValueError):
        operator_scale.quantile([], 0.5)
    parts = operator_scale.chunks(list(range(1001)), 250)
    assert [len(p) for p in parts] == [250, 250, 250, 250, 1]
    assert [x for p in parts for x in p] == list(range(1001))


def test_request_counts_are_the_growth_by_verb_and_resource_without_watches() -> None:
    d = operator_scale.delta(
        operator_scale.parse_samples(APISERVER_BEFORE),
        operator_scale.parse_samples(APISERVER_AFTER),
    )
    assert operator_scale.request_counts(d) == {
        "GET knnindexes": 32.0,  # 30 more 200s and 2 new 404s
        "APPLY jobs": 10.0,
        "APPLY knnindexes/status": 10.0,
    }


def test_apf_waits_per_priority_level() -> None:
    before = operator_scale.parse_samples(APISERVER_BEFORE)
    after = operator_scale.parse_samples(APISERVER_AFTER)
    [low] = operator_scale.apf_waits(operator_scale.delta(before, after))
    assert (low.priority_level, low.requests, low.waited_over_100ms, low.rejected) == (
        "workload-low",
        10,
        4,
        1,
    )
    assert low.mean_seconds == pytest.approx(0.2)
    seats = operator_scale.by_label(
        after, "apiserver_flowcontrol_nominal_limit_seats", "priority_level"
    )
    assert seats == {"workload-low": 245.0}


def split(**kw: float) -> operator_scale.CpuSplit:
    values: dict[str, float] = {
        "wall": 100.0,
        "operator": 60.0,
        "apiserver": 80.0,
        "etcd": 10.0,
        "kubectl": 5.0,
        "bench": 2.0,
        "machine_busy": 187.0,
        "interrupts": 3.0,
        "steal": 1.0,
    }
    values.update(kw)
    return operator_scale.CpuSplit(cores=2, others=(("pytest", 20.0),), **values)


def test_cpu_split_attributes_the_rest_of_the_machine_to_other_processes() -> None:
    s = split()
    assert s.ours == pytest.approx(157.0)
    assert s.other == pytest.approx(30.0)
    text = s.describe()
    assert "operator 60.0 s (30%)" in text
    assert "kube-apiserver 80.0 s (40%)" in text
    assert "other processes 30.0 s (15%) [pytest 20.0 s]" in text
    assert "idle 9.0 s" in text
    assert "of 200 CPU-seconds (2 cores x 100.0 s)" in text
    assert operator_scale.bound_by(s) == (
        "the cores were saturated; the benchmark's own CPU: kube-apiserver 51%, "
        "the operator 38%, etcd 6%, kubectl 3%; **disturbed**: other processes took 15% "
        "of the machine (re-run on a quiet machine)"
    )
    assert operator_scale.cpu_floor(s) == pytest.approx(78.5)
    quiet = split(operator=20.0, apiserver=30.0, machine_busy=70.0)
    assert operator_scale.bound_by(quiet) == (
        "the cores were 37% busy; the benchmark's own CPU: kube-apiserver 45%, "
        "the operator 30%, etcd 15%, kubectl 7%"
    )


def test_other_processes_are_summed_by_name_and_exclude_ours() -> None:
    before = {1: ("pytest", 10.0), 2: ("kubectl", 1.0), 3: ("etcd", 5.0), 4: ("pytest", 1.0)}
    after = {
        1: ("pytest", 14.0),
        2: ("kubectl", 1.5),
        3: ("etcd", 9.0),
        4: ("pytest", 2.0),
        5: ("new", 3.0),  # started during the window: not attributed by name
    }
    assert operator_scale.others_by_name(before, after, exclude=[3]) == (
        ("pytest", 5.0),
        ("kubectl", 0.5),
    )


def test_progress_records_the_first_job_and_the_first_building_status() -> None:
    p = operator_scale.Progress(frozenset({"a", "b"}))
    p.on_index("ADDED", {"metadata": {"name": "a"}}, 1.0)
    p.on_index("MODIFIED", {"metadata": {"name": "a"}, "status": {"phase": "Building"}}, 3.0)
    p.on_index("MODIFIED", {"metadata": {"name": "a"}, "status": {"phase": "Building"}}, 4.0)
    p.on_index("ADDED", {"metadata": {"name": "other"}, "status": {"phase": "Building"}}, 2.0)
    label = {"labels": {"knn.dev/index": "a"}}
    p.on_job("ADDED", {"metadata": {"name": "a-build-1", **label}}, 2.0)
    p.on_job("MODIFIED", {"metadata": {"name": "a-build-1", **label}}, 5.0)
    p.on_job("ADDED", {"metadata": {"name": "x", "labels": {}}}, 5.0)
    assert p.created == {"a": 1.0}
    assert p.reconciled == {"a": 3.0}
    assert p.jobs == {"a": 2.0}


def test_report_rows_set_each_number_against_its_target() -> None:
    args = argparse.Namespace(chunk=250, apply_parallel=2)
    r = operator_scale.Result(
        "apply",
        5000,
        apply_seconds=40.0,
        all_jobs=55.0,
        all_reconciled=None,
        waited=600.0,
        reconciled_seen=4000,
        lags=[1.0, 2.0, 30.0],
        peak_rss=250_000_000,
        cpu=split(),
        reconciles=15000,
        reconcile_seconds=30.0,
        requests={"GET knnindexes": 15000.0},
    )
    rows = dict(operator_scale.rows(r, args))
    text = operator_scale.table("t", rows.items())
    assert text.splitlines()[:2] == ["| t | result |", "|---|---|"]
    assert (
        "**not reached: 4,000 of 5,000 after 600 s — not met**"
        in rows["**every object reports phase Building** (target: within 60 s)"]
    )
    assert rows["**operator peak RSS** (target: under 300 MB)"] == ("**250 MB (238 MiB) — met**")
    assert rows["lag of each object from its creation to Building: p50 / p99 / max"] == (
        "2.0 / 30.0 / 30.0 s"
    )
    reconciles = "operator reconciles (its metrics): count, per object, mean duration, errors"
    assert rows[reconciles] == "15,000, 3.00, 2 ms, 0"


def test_the_settled_window_reads_as_shares_of_one_core_and_a_rate() -> None:
    settled = operator_scale.Settled(split(wall=60.0, operator=27.0, apiserver=12.0), 1_800)
    assert settled.describe() == (
        "operator 45% of a core, kube-apiserver 20%, etcd 17%; 30 reconciles/s (over 60 s)"
    )


def test_milvus_lite_is_pinned_with_its_client() -> None:
    text = milvus.CONSTRAINTS.read_text()
    assert milvus.pinned_version() == "3.2.2"
    assert "\npymilvus==" in "\n" + text


def test_memory_reads_kib_fields_of_proc_status() -> None:
    text = "Name:\tknn-serve\nVmRSS:\t  821248 kB\nRssAnon:\t  791552 kB\nThreads:\t4\n"
    assert _status_kib(text) == {"VmRSS": 821248, "RssAnon": 791552}
