"""`make bench BENCH_ARGS="--only operator"`: N KnnIndex objects (default 5,000)
against the real operator and the real API server, on this machine's cores.

DESIGN section 6: 5,000 KnnIndex objects reconciled within 60 s with the
operator's RSS under 300 MB. Each scenario starts its own etcd + kube-apiserver
(knn_devtools.controlplane), installs the CRDs and runs `python -m knn_operator`
as a ServiceAccount bound to the chart's ClusterRole (rbac/clusterrole.yaml),
with the production resync period (30 s):

* apply: the operator running, the objects applied with
  `kubectl apply --server-side` in chunks (``--chunk``, ``--apply-parallel``
  kubectl processes at a time). Seconds from the start of the apply until it
  returns, until every object has its builder Job, and until every object
  reports phase Building (reconciled); and each object's lag from its creation
  to Building;
* backlog: the same objects applied while the operator is down, then the
  operator started: seconds from its start until every Job exists and every
  object is Building. This is the operator's own throughput, with no kubectl
  competing for the cores.

Progress is read from two watches of the bench's own (one on KnnIndexes, one
on Jobs as metadata only), so nothing polls the API server. Also measured: the
operator's peak RSS (psutil, every 0.1 s), CPU seconds of the operator,
kube-apiserver, etcd, kubectl and this process, the machine's busy time
(what else ran) and steal, the API requests by verb and resource
(apiserver_request_total), time spent queueing in API Priority and Fairness
(apiserver_flowcontrol_request_wait_duration_seconds) and the operator's own
reconcile count and time. Nothing here has an in-process baseline, so the
numbers are absolute and set against the targets (met / not met).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import math
import os
import resource
import shutil
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import orjson
import psutil  # type: ignore[import-untyped]  # psutil ships no type information
from knn_contracts import api
from knn_contracts.rollout import PHASE_BUILDING
from knn_devtools.controlplane import ControlPlane
from knn_devtools.crds import install_crds
from knn_devtools.knnoperator import (
    CLUSTER_ROLE_FILE,
    CRD_DIR,
    PRODUCTION_RESYNC_SECONDS,
    ROLE_NAME,
    OperatorProcess,
    PeakRss,
)
from knn_devtools.kubectl import Kubectl
from knn_devtools.rbac import service_account_with_role
from prometheus_client.parser import text_string_to_metric_families

TARGET_SECONDS: Final = 60.0
TARGET_RSS_BYTES: Final = 300_000_000  # 300 MB (decimal, the stricter reading)
MB: Final = 1_000_000
MIB: Final = 2**20
NAMESPACE: Final = "bench"
OPERATOR_NAMESPACE: Final = "knn-system"
SCENARIOS: Final = ("apply", "backlog")
PROGRESS_EVERY: Final = 5.0
# The same minimal spec the control-plane tests use.
MINIMAL_SPEC: Final[dict[str, Any]] = {
    "source": {"uri": "s3://vectors/products/emb.npy", "dimension": 384},
    "storage": {"uri": "s3://artifacts/products"},
}
PARTIAL_METADATA: Final = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"

Rows = list[tuple[str, str]]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def add_arguments(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("operator scale (--only operator)")
    g.add_argument("--objects", type=int, default=5_000, help="KnnIndex objects (default 5,000)")
    g.add_argument(
        "--scenario",
        choices=[*SCENARIOS, "both"],
        default="both",
        help="apply (operator running during the apply), backlog (operator started "
        "with every object waiting) or both (default)",
    )
    g.add_argument("--chunk", type=int, default=250, help="objects per kubectl apply (default 250)")
    g.add_argument(
        "--apply-parallel",
        type=int,
        default=2,
        help="kubectl apply processes at a time (default 2)",
    )
    g.add_argument(
        "--operator-timeout",
        type=float,
        default=600.0,
        help="give up waiting for the operator after this many seconds",
    )
    g.add_argument(
        "--resync-seconds",
        type=float,
        default=PRODUCTION_RESYNC_SECONDS,
        help="the operator's level-based resync period (KNN_RESYNC_SECONDS; default: "
        f"the production {PRODUCTION_RESYNC_SECONDS:.0f} s)",
    )
    g.add_argument(
        "--settle-seconds",
        type=float,
        default=0.0,
        help="after every object is Building, measure the operator's and API server's CPU "
        "and the reconciles for this long (the steady state: resync passes); default off",
    )
    g.add_argument(
        "--keep-logs", action="store_true", help="keep the operator's and control plane's logs"
    )


# -- pure helpers (tests/unit/test_bench.py) ------------------------------------------


def verdict(value: float | None, target: float) -> str:
    """'met' when a value was reached and is under its target."""
    return "met" if value is not None and value < target else "not met"


def seconds(value: float | None, reached: int, total: int, waited: float) -> str:
    """A time, or how far it got when it was never reached."""
    if value is not None:
        return f"{value:.1f} s"
    return f"not reached: {reached:,} of {total:,} after {waited:.0f} s"


def megabytes(n: int) -> str:
    return f"{n / MB:.0f} MB ({n / MIB:.0f} MiB)"


def quantile(values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile (q in [0, 1]) of a non-empty sequence."""
    if not values:
        raise ValueError("quantile of no values")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q * len(ordered))))
    return ordered[rank - 1]


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def knn_index(name: str) -> dict[str, Any]:
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KNN_INDEX_KIND,
        "metadata": {"name": name},
        "spec": MINIMAL_SPEC,
    }


def parse_samples(text: str) -> Samples:
    """Prometheus text exposition → {(sample name, sorted labels): value}."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out


def delta(before: Samples, after: Samples) -> Samples:
    """Counters' growth between two scrapes (series new in ``after`` count from 0)."""
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0) > 0}


def request_counts(d: Samples) -> dict[str, float]:
    """apiserver_request_total growth by 'VERB resource[/subresource]'."""
    out: dict[str, float] = {}
    for (name, labels), v in d.items():
        if name != "apiserver_request_total":
            continue
        lab = dict(labels)
        if lab.get("verb") == "WATCH":
            continue
        res = lab.get("resource", "")
        if lab.get("subresource"):
            res += "/" + lab["subresource"]
        key = f"{lab.get('verb', '?')} {res}"
        out[key] = out.get(key, 0.0) + v
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    """One metric's samples summed by the value of one label."""
    out: dict[str, float] = {}
    for (sample, labels), v in samples.items():
        if sample == name:
            key = dict(labels).get(label, "")
            out[key] = out.get(key, 0.0) + v
    return out


@dataclass(frozen=True)
class ApfWait:
    """Requests a priority level let through, and how long they queued first."""

    priority_level: str
    requests: int
    mean_seconds: float
    waited_over_100ms: int
    rejected: int


def apf_waits(d: Samples) -> list[ApfWait]:
    """From the growth of apiserver_flowcontrol_request_wait_duration_seconds
    (executed requests) and apiserver_flowcontrol_rejected_requests_total."""
    name = "apiserver_flowcontrol_request_wait_duration_seconds"
    count: dict[str, float] = {}
    total: dict[str, float] = {}
    under_100ms: dict[str, float] = {}
    rejected: dict[str, float] = {}
    for (sample, labels), v in d.items():
        lab = dict(labels)
        level = lab.get("priority_level", "?")
        if sample == "apiserver_flowcontrol_rejected_requests_total":
            rejected[level] = rejected.get(level, 0.0) + v
            continue
        if lab.get("execute") != "true":
            continue
        if sample == f"{name}_count":
            count[level] = count.get(level, 0.0) + v
        elif sample == f"{name}_sum":
            total[level] = total.get(level, 0.0) + v
        elif sample == f"{name}_bucket" and _le(lab.get("le")) == 0.1:
            under_100ms[level] = under_100ms.get(level, 0.0) + v
    levels = sorted(set(count) | set(rejected), key=lambda lv: -count.get(lv, 0.0))
    return [
        ApfWait(
            priority_level=lv,
            requests=int(count.get(lv, 0.0)),
            mean_seconds=total.get(lv, 0.0) / count[lv] if count.get(lv) else 0.0,
            waited_over_100ms=int(count.get(lv, 0.0) - under_100ms.get(lv, 0.0)),
            rejected=int(rejected.get(lv, 0.0)),
        )
        for lv in levels
    ]


def _le(bound: str | None) -> float | None:
    try:
        return float(bound) if bound is not None else None
    except ValueError:
        return None


@dataclass(frozen=True)
class CpuSplit:
    """CPU seconds over one measured window, by who used them."""

    wall: float
    cores: int
    operator: float
    apiserver: float
    etcd: float
    kubectl: float
    bench: float
    machine_busy: float  # user + nice + system of every process (/proc/stat)
    interrupts: float  # irq + softirq: loopback networking, mostly
    steal: float
    # Processes this benchmark did not start that ran through the window, by name.
    others: tuple[tuple[str, float], ...] = ()

    @property
    def ours(self) -> float:
        return self.operator + self.apiserver + self.etcd + self.kubectl + self.bench

    @property
    def other(self) -> float:
        """Busy time of processes this benchmark did not start (another job's tests)."""
        return max(0.0, self.machine_busy - self.ours)

    @property
    def capacity(self) -> float:
        return self.wall * self.cores

    def describe(self) -> str:
        cap = self.capacity

        def part(name: str, s: float) -> str:
            return f"{name} {s:.1f} s ({s / cap:.0%})" if cap > 0 else f"{name} {s:.1f} s"

        top = [f"{name} {s:.1f} s" for name, s in self.others[:3] if s >= 0.05]
        other = part("other processes", self.other) + (f" [{', '.join(top)}]" if top else "")
        idle = max(0.0, cap - self.machine_busy - self.interrupts - self.steal)
        return (
            ", ".join(
                [
                    part("operator", self.operator),
                    part("kube-apiserver", self.apiserver),
                    part("etcd", self.etcd),
                    part("kubectl", self.kubectl),
                    part("bench watches", self.bench),
                    other,
                    part("kernel irq/softirq", self.interrupts),
                    part("steal", self.steal),
                    part("idle", idle),
                ]
            )
            + f" — of {cap:.0f} CPU-seconds ({self.cores} cores x {self.wall:.1f} s)"
        )


DISTURBED_SHARE: Final = 0.10


def bound_by(split: CpuSplit) -> str:
    """Whether the machine was saturated, how the benchmark's own CPU divides
    between its parties, and whether other processes disturbed the measurement."""
    cap = split.capacity
    parties = {
        "kube-apiserver": split.apiserver,
        "the operator": split.operator,
        "etcd": split.etcd,
        "kubectl": split.kubectl,
    }
    used = split.machine_busy + split.interrupts + split.steal
    busy = used / cap if cap > 0 else 0.0
    saturated = "the cores were saturated" if busy >= 0.9 else f"the cores were {busy:.0%} busy"
    ours = split.ours
    shares = ", ".join(
        f"{name} {v / ours:.0%}"
        for name, v in sorted(parties.items(), key=lambda kv: -kv[1])
        if ours > 0 and v / ours >= 0.01
    )
    text = f"{saturated}; the benchmark's own CPU: {shares}"
    other = split.other / cap if cap > 0 else 0.0
    if other > DISTURBED_SHARE:
        text += (
            f"; **disturbed**: other processes took {other:.0%} of the machine "
            "(re-run on a quiet machine)"
        )
    return text


def cpu_floor(split: CpuSplit) -> float:
    """Seconds the benchmark's own CPU work needs on its cores with nothing else
    running and perfect overlap: the least wall time this work can take here."""
    return split.ours / split.cores if split.cores else 0.0


def table(title: str, rows: Iterable[tuple[str, str]]) -> str:
    lines = [f"| {title} | result |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


# -- machine and process accounting -------------------------------------------------


@dataclass(frozen=True)
class MachineCpu:
    busy: float  # seconds over all cores: user + nice + system
    interrupts: float  # irq + softirq
    steal: float

    @classmethod
    def read(cls, path: str = "/proc/stat") -> MachineCpu:
        with open(path) as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        hz = os.sysconf("SC_CLK_TCK")
        # user nice system idle iowait irq softirq steal (guest is inside user)
        user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        return cls((user + nice + system) / hz, (irq + softirq) / hz, steal / hz)


def _cpu(pid: int) -> float:
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(t.user + t.system)


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _all_processes() -> dict[int, tuple[str, float]]:
    out: dict[int, tuple[str, float]] = {}
    for p in psutil.process_iter(["name", "cpu_times"]):
        t = p.info.get("cpu_times")
        if t is not None:
            out[p.pid] = (str(p.info.get("name") or "?"), float(t.user + t.system))
    return out


def others_by_name(
    before: Mapping[int, tuple[str, float]],
    after: Mapping[int, tuple[str, float]],
    exclude: Iterable[int],
) -> tuple[tuple[str, float], ...]:
    """CPU seconds of the processes alive at both ends that are not excluded,
    summed by name, largest first."""
    skip = set(exclude)
    by_name: dict[str, float] = {}
    for pid, (name, cpu) in after.items():
        if pid in skip or pid not in before or before[pid][0] != name:
            continue
        by_name[name] = by_name.get(name, 0.0) + cpu - before[pid][1]
    return tuple(sorted(by_name.items(), key=lambda kv: -kv[1]))


@dataclass
class CpuMeter:
    """Snapshots CPU seconds of every party at start; ``split()`` gives the growth.
    A process added to ``pids`` later (the operator of the backlog scenario,
    started after the clock) counts from zero."""

    pids: dict[str, int]
    began: float = field(default_factory=time.monotonic)
    _start: dict[str, float] = field(default_factory=dict)
    _machine: MachineCpu = field(default_factory=MachineCpu.read)
    _processes: dict[int, tuple[str, float]] = field(default_factory=_all_processes)

    def __post_init__(self) -> None:
        self._start = self._now()

    def _now(self) -> dict[str, float]:
        now = {name: _cpu(pid) for name, pid in self.pids.items()}
        now["kubectl"] = _children_cpu()
        now["bench"] = _cpu(os.getpid())
        return now

    def split(self) -> CpuSplit:
        now, machine, processes = self._now(), MachineCpu.read(), _all_processes()
        d = {k: now[k] - self._start.get(k, 0.0) for k in now}
        return CpuSplit(
            wall=time.monotonic() - self.began,
            cores=len(os.sched_getaffinity(0)),
            operator=d.get("operator", 0.0),
            apiserver=d.get("kube-apiserver", 0.0),
            etcd=d.get("etcd", 0.0),
            kubectl=d["kubectl"],
            bench=d["bench"],
            machine_busy=machine.busy - self._machine.busy,
            interrupts=machine.interrupts - self._machine.interrupts,
            steal=machine.steal - self._machine.steal,
            others=others_by_name(self._processes, processes, [os.getpid(), *self.pids.values()]),
        )


# -- the API server, read by the bench itself ---------------------------------------


class Api:
    """An admin HTTPS client of the bench's control plane (system:masters)."""

    def __init__(self, cp: ControlPlane, workdir: Path) -> None:
        pki = cp.pki
        cert, key = workdir / "admin.crt", workdir / "admin.key"
        cert.write_bytes(pki.admin.cert_pem)
        key.write_bytes(pki.admin.key_pem)
        key.chmod(0o600)
        tls = ssl.create_default_context(cadata=pki.ca.cert_pem.decode())
        tls.load_cert_chain(str(cert), str(key))
        self.tls = tls
        self.server = cp.server

    def client(self, read_timeout: float | None = 30.0) -> httpx.Client:
        return httpx.Client(
            base_url=self.server,
            verify=self.tls,
            trust_env=False,
            timeout=httpx.Timeout(30.0, read=read_timeout),
        )

    def metrics(self) -> Samples:
        with self.client() as c:
            r = c.get("/metrics")
            r.raise_for_status()
            return parse_samples(r.text)

    def resource_version(self, path: str) -> str:
        with self.client() as c:
            r = c.get(path, params={"limit": "1"})
            r.raise_for_status()
            return str(r.json()["metadata"]["resourceVersion"])


@dataclass
class Progress:
    """What the watches have seen, as monotonic times per KnnIndex name."""

    names: frozenset[str]
    created: dict[str, float] = field(default_factory=dict)
    jobs: dict[str, float] = field(default_factory=dict)
    reconciled: dict[str, float] = field(default_factory=dict)

    def on_index(self, type_: str, obj: Mapping[str, Any], at: float) -> None:
        name = obj["metadata"]["name"]
        if name not in self.names:
            return
        self.created.setdefault(name, at)
        if (obj.get("status") or {}).get("phase") == PHASE_BUILDING:
            self.reconciled.setdefault(name, at)

    def on_job(self, type_: str, obj: Mapping[str, Any], at: float) -> None:
        owner = (obj["metadata"].get("labels") or {}).get(api.LABEL_INDEX)
        if type_ == "ADDED" and owner in self.names:
            self.jobs.setdefault(owner, at)


class Watch:
    """A watch of one collection in a daemon thread; events go to ``on_event``.
    Reconnects from the last resourceVersion seen (bookmarks keep it fresh)."""

    def __init__(
        self,
        api_: Api,
        path: str,
        resource_version: str,
        on_event: Callable[[str, Mapping[str, Any], float], None],
        accept: str = "application/json",
    ) -> None:
        self._api, self._path, self._rv = api_, path, resource_version
        self._on_event, self._accept = on_event, accept
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"watch {path}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._once()
        except BaseException as e:  # reported by check(); a stopped watch is quiet
            if not self._stop.is_set():
                self.error = e

    def _once(self) -> None:
        params = {
            "watch": "1",
            "resourceVersion": self._rv,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "600",
        }
        with (
            self._api.client(read_timeout=None) as c,
            c.stream("GET", self._path, params=params, headers={"Accept": self._accept}) as r,
        ):
            r.raise_for_status()
            for line in r.iter_lines():
                if self._stop.is_set():
                    return
                if not line:
                    continue
                ev = orjson.loads(line)
                if ev["type"] == "ERROR":
                    raise RuntimeError(f"watch {self._path}: {ev['object']}")
                self._rv = ev["object"]["metadata"]["resourceVersion"]
                if ev["type"] != "BOOKMARK":
                    self._on_event(ev["type"], ev["object"], time.monotonic())

    def check(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"watch {self._path} failed: {self.error!r}") from self.error

    def stop(self) -> None:
        self._stop.set()


# -- one scenario --------------------------------------------------------------------


@dataclass
class Result:
    scenario: str
    objects: int
    apply_seconds: float | None = None  # from the start of the apply (apply scenario)
    first_job: float | None = None
    all_jobs: float | None = None
    all_reconciled: float | None = None
    waited: float = 0.0
    jobs_seen: int = 0
    reconciled_seen: int = 0
    lags: list[float] = field(default_factory=list)  # creation → Building, per object
    peak_rss: int = 0
    cpu: CpuSplit | None = None
    requests: dict[str, float] = field(default_factory=dict)
    apf: list[ApfWait] = field(default_factory=list)
    apf_seats: dict[str, float] = field(default_factory=dict)  # nominal, by priority level
    reconciles: int = 0
    reconcile_seconds: float = 0.0
    reconcile_errors: int = 0
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    separate_apply_seconds: float | None = None  # backlog: the apply, operator down
    separate_apply_cpu: CpuSplit | None = None
    settled: Settled | None = None  # --settle-seconds: after everything is Building


@dataclass(frozen=True)
class Settled:
    """A window after every object is Building, when only the resync and wake-ups run."""

    cpu: CpuSplit
    reconciles: int

    def describe(self) -> str:
        w = self.cpu.wall
        return (
            f"operator {self.cpu.operator / w:.0%} of a core, kube-apiserver "
            f"{self.cpu.apiserver / w:.0%}, etcd {self.cpu.etcd / w:.0%}; "
            f"{self.reconciles / w:.0f} reconciles/s (over {w:.0f} s)"
        )


def _apply(kubectl: Kubectl, names: Sequence[str], chunk: int, parallel: int) -> None:
    def one(part: Sequence[str]) -> None:
        stream = "\n---\n".join(json.dumps(knn_index(n)) for n in part)
        kubectl.run(
            "apply", "--server-side", "-n", NAMESPACE, "-o", "name", "-f", "-",
            stdin=stream, timeout=900,
        )  # fmt: skip

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        for f in [pool.submit(one, part) for part in chunks(names, chunk)]:
            f.result()


@contextlib.contextmanager
def _cluster(
    workdir: Path, log_dir: Path, resync_seconds: float
) -> Iterator[tuple[ControlPlane, Kubectl, OperatorProcess]]:
    """A fresh control plane with the CRDs, the namespace and the operator's
    ServiceAccount; the operator is created but not started."""
    with ControlPlane(log_dir=log_dir, echo=None) as cp:
        kubectl = cp.kubectl()
        install_crds(kubectl, [CRD_DIR])
        for ns in (NAMESPACE, OPERATOR_NAMESPACE):
            kubectl.run("create", "namespace", ns)
        kubectl.run("apply", "--server-side", "-f", str(CLUSTER_ROLE_FILE))
        account = service_account_with_role(
            kubectl,
            namespace=OPERATOR_NAMESPACE,
            name="knn-operator",
            role=ROLE_NAME,
            cluster_wide=True,
            kubeconfig_path=workdir / "operator.kubeconfig",
        )
        operator = OperatorProcess(
            account.kubeconfig, log_dir / "operator.log", resync_seconds=resync_seconds
        )
        try:
            yield cp, kubectl, operator
        finally:
            operator.stop()


def run_scenario(scenario: str, args: argparse.Namespace, workdir: Path) -> Result:
    n = args.objects
    names = [f"idx-{i:05d}" for i in range(n)]
    log_dir = workdir / scenario
    result = Result(scenario, n)
    with _cluster(workdir, log_dir, args.resync_seconds) as (cp, kubectl, operator):
        apix = Api(cp, workdir)
        progress = Progress(frozenset(names))
        idx_path = f"/apis/{api.API_VERSION}/namespaces/{NAMESPACE}/{api.KNN_INDEX_PLURAL}"
        jobs_path = f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs"
        if scenario == "apply":
            operator.start()
        else:
            apply_meter = CpuMeter(
                {"kube-apiserver": cp.processes["kube-apiserver"], "etcd": cp.processes["etcd"]}
            )
            _apply(kubectl, names, args.chunk, args.apply_parallel)
            result.separate_apply_cpu = apply_meter.split()
            result.separate_apply_seconds = result.separate_apply_cpu.wall
            print(
                f"  applied {n:,} with the operator down in {result.separate_apply_seconds:.1f} s"
            )
        watches = [
            Watch(apix, idx_path, apix.resource_version(idx_path), progress.on_index),
            Watch(
                apix, jobs_path, apix.resource_version(jobs_path), progress.on_job, PARTIAL_METADATA
            ),
        ]
        result.load_before = os.getloadavg()
        metrics_before = apix.metrics()
        pids = {"kube-apiserver": cp.processes["kube-apiserver"], "etcd": cp.processes["etcd"]}
        if scenario == "apply":
            pids["operator"] = operator.pid
        t0 = time.monotonic()
        meter = CpuMeter(pids, began=t0)
        if scenario == "backlog":
            operator.start()
            meter.pids["operator"] = operator.pid
        applier: concurrent.futures.Future[None] | None = None
        with (
            PeakRss(operator.pid) as rss,
            concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool,
        ):
            if scenario == "apply":
                applier = pool.submit(_apply, kubectl, names, args.chunk, args.apply_parallel)
            _wait(result, progress, operator, watches, applier, t0, args.operator_timeout)
            result.cpu = meter.split()
        result.peak_rss = rss.peak
        result.reconciles, result.reconcile_seconds, result.reconcile_errors = operator.reconciles()
        metrics_after = apix.metrics()
        d = delta(metrics_before, metrics_after)
        result.requests, result.apf = request_counts(d), apf_waits(d)
        result.apf_seats = by_label(
            metrics_after, "apiserver_flowcontrol_nominal_limit_seats", "priority_level"
        )
        # After the request counts, so that they cover the run alone.
        settle = getattr(args, "settle_seconds", 0.0)
        if settle > 0 and result.all_reconciled is not None:
            settler = CpuMeter(dict(meter.pids))
            time.sleep(settle)
            done = operator.reconciles()[0] - result.reconciles
            result.settled = Settled(settler.split(), done)
        for w in watches:
            w.stop()
        result.lags = [
            progress.reconciled[k] - progress.created[k]
            for k in progress.reconciled
            if k in progress.created
        ]
    return result


def _wait(
    result: Result,
    progress: Progress,
    operator: OperatorProcess,
    watches: list[Watch],
    applier: concurrent.futures.Future[None] | None,
    t0: float,
    timeout: float,
) -> None:
    n = result.objects
    next_report = t0 + PROGRESS_EVERY
    while True:
        now = time.monotonic()
        operator.check_running()
        for w in watches:
            w.check()
        if applier is not None and applier.done() and result.apply_seconds is None:
            applier.result()  # raises the apply's error
            result.apply_seconds = now - t0
        if result.first_job is None and progress.jobs:
            result.first_job = min(progress.jobs.values()) - t0
        if result.all_jobs is None and len(progress.jobs) >= n:
            result.all_jobs = max(progress.jobs.values()) - t0
        if result.all_reconciled is None and len(progress.reconciled) >= n:
            result.all_reconciled = max(progress.reconciled.values()) - t0
        done = result.all_jobs is not None and result.all_reconciled is not None
        if done and (applier is None or result.apply_seconds is not None):
            break
        if now - t0 > timeout:
            break
        if now >= next_report:
            next_report += PROGRESS_EVERY
            rss = operator.rss_bytes()
            created = f"created {len(progress.created):,} · " if applier is not None else ""
            print(
                f"  {now - t0:5.0f} s: {created}Jobs {len(progress.jobs):,} · "
                f"Building {len(progress.reconciled):,} · operator RSS {rss / MB:.0f} MB",
                flush=True,
            )
        time.sleep(0.1)
    result.waited = time.monotonic() - t0
    result.jobs_seen, result.reconciled_seen = len(progress.jobs), len(progress.reconciled)
    if applier is not None and result.apply_seconds is None:
        applier.cancel()


# -- report --------------------------------------------------------------------------


def rows(r: Result, args: argparse.Namespace) -> Rows:
    n, w = r.objects, r.waited
    out: Rows = []
    parallel = f"chunks of {args.chunk}, {args.apply_parallel} kubectl at a time"
    if r.scenario == "apply":
        out.append(
            (
                f"`kubectl apply --server-side` of {n:,} objects returns ({parallel})",
                seconds(r.apply_seconds, 0, n, w),
            )
        )
        start = "the start of the apply"
    else:
        out.append(
            (
                f"(before: `kubectl apply --server-side` of {n:,} objects, operator down, "
                f"{parallel})",
                seconds(r.separate_apply_seconds, 0, n, 0),
            )
        )
        if r.separate_apply_cpu is not None:
            out.append(("(CPU seconds of that apply)", r.separate_apply_cpu.describe()))
        start = "the operator's start"
    out.append((f"the first builder Job exists (from {start})", seconds(r.first_job, 0, n, w)))
    out.append((f"every builder Job exists (from {start})", seconds(r.all_jobs, r.jobs_seen, n, w)))
    out.append(
        (
            f"**every object reports phase Building** (target: within {TARGET_SECONDS:.0f} s)",
            f"**{seconds(r.all_reconciled, r.reconciled_seen, n, w)} — "
            f"{verdict(r.all_reconciled, TARGET_SECONDS)}**",
        )
    )
    if r.scenario == "apply" and r.lags:
        out.append(
            (
                "lag of each object from its creation to Building: p50 / p99 / max",
                f"{quantile(r.lags, 0.5):.1f} / {quantile(r.lags, 0.99):.1f} / {max(r.lags):.1f} s",
            )
        )
    out.append(
        (
            f"**operator peak RSS** (target: under {TARGET_RSS_BYTES / MB:.0f} MB)",
            f"**{megabytes(r.peak_rss)} — {verdict(r.peak_rss, TARGET_RSS_BYTES)}**",
        )
    )
    if r.cpu is not None:
        out.append(("CPU seconds until the last object was Building", r.cpu.describe()))
        out.append(("what bounds it", bound_by(r.cpu)))
        out.append(
            (
                f"CPU floor: the benchmark's own CPU seconds / {r.cpu.cores} cores "
                "(least wall time on idle cores)",
                f"{cpu_floor(r.cpu):.1f} s",
            )
        )
    if r.reconciles:
        out.append(
            (
                "operator reconciles (its metrics): count, per object, mean duration, errors",
                f"{r.reconciles:,}, {r.reconciles / n:.2f}, "
                f"{r.reconcile_seconds / r.reconciles * 1000:.0f} ms, {r.reconcile_errors:,}",
            )
        )
    if r.requests:
        top = list(r.requests.items())[:8]
        out.append(
            (
                "API requests per object (apiserver_request_total, all clients, no watches)",
                ", ".join(f"{k} {v / n:.2f}" for k, v in top),
            )
        )
    for a in r.apf[:3]:
        out.append(
            (
                f"APF priority level {a.priority_level} "
                f"({r.apf_seats.get(a.priority_level, 0):.0f} nominal seats): requests, "
                "mean queue wait, waited > 100 ms, rejected",
                f"{a.requests:,}, {a.mean_seconds * 1000:.1f} ms, {a.waited_over_100ms:,}, "
                f"{a.rejected:,}",
            )
        )
    if r.settled is not None:
        out.append(("once every object is Building (--settle-seconds)", r.settled.describe()))
    resync = getattr(args, "resync_seconds", PRODUCTION_RESYNC_SECONDS)
    out.append(("operator resync period (KNN_RESYNC_SECONDS)", f"{resync:.0f} s"))
    la = r.load_before
    out.append(("load average before (1, 5, 15 min)", f"{la[0]:.2f}, {la[1]:.2f}, {la[2]:.2f}"))
    return out


def main(args: argparse.Namespace) -> int:
    scenarios = SCENARIOS if args.scenario == "both" else (args.scenario,)
    workdir = Path(tempfile.mkdtemp(prefix="knn-bench-operator-"))
    ok = False
    try:
        for scenario in scenarios:
            print(f"operator scale, {scenario}: {args.objects:,} KnnIndex objects", flush=True)
            r = run_scenario(scenario, args, workdir)
            print()
            print(table(f"operator scale: {scenario} (N = {r.objects:,})", rows(r, args)))
            print(flush=True)
        ok = True
    finally:
        if args.keep_logs or not ok:
            print(f"logs: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0
