"""`make bench`: data-plane benchmarks, each printed as a ratio to its baseline;
`--only operator` instead runs the operator scale benchmark (operator_scale.py),
which has no in-process baseline and prints absolute numbers against targets.

Baselines run in this same process (raw hnswlib) on the same data, index, ef
and queries, so the ratios hold whatever the machine's speed. Each ratio is the
median of alternating baseline/server pairs, re-measuring a pair during which
the hypervisor stole CPU time (paired.py). The peer comparison runs Chroma's
server on the same machine and data (chroma.py).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import hnswlib
import httpx
import numpy as np
import numpy.typing as npt
import orjson
from knn_devtools.knnserve import KNN_BUILD, serve
from knn_devtools.synthetic import clustered, sample
from knn_serving.cpus import available_cpus
from knn_serving.exact import exact_topk, recall_at_k

from . import chroma, kmeans, latency, milvus, operator_scale, paired
from .levers import lever_rows, load_average
from .live import live_rows
from .loader import JSON, Loader
from .memory import memory_rows
from .recall import recall_rows

Rows = list[tuple[str, str]]


def qps_single(index: hnswlib.Index, queries: np.ndarray, k: int, seconds: float) -> float:
    n, done, start = len(queries), 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for i in range(0, n):
            index.knn_query(queries[i : i + 1], k=k, num_threads=1)
        done += n
    return done / (time.perf_counter() - start)


def qps_batch(
    index: hnswlib.Index, queries: np.ndarray, k: int, batch: int, seconds: float
) -> float:
    n, done, start = len(queries), 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for i in range(0, n - batch + 1, batch):
            index.knn_query(queries[i : i + batch], k=k, num_threads=1)
            done += batch
    return done / (time.perf_counter() - start)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m bench")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--ef", type=int, default=64)
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--seconds", type=int, default=5, help="length of each measured run")
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument(
        "--rounds", type=int, default=9, help="alternating baseline/server pairs per ratio"
    )
    ap.add_argument("--build-repeats", type=int, default=3, help="builder pairs")
    ap.add_argument(
        "--max-steal",
        type=float,
        default=0.05,
        help="re-measure a pair if the hypervisor took more than this share of the CPU",
    )
    ap.add_argument(
        "--no-peer",
        action="store_true",
        help="skip the comparisons with Chroma's server and Milvus Lite",
    )
    ap.add_argument(
        "--only",
        choices=["recall", "live", "operator", "levers", "memory", "peers", "kmeans"],
        help="run one section: recall (gate, gauge and leave-one-out against new queries), "
        "live (live-recall overhead), operator (N KnnIndex objects against the real "
        "operator and API server; takes minutes and starts its own control plane, so a "
        "plain `make bench` does not run it), levers (this checkout's knn-serve against "
        "--baseline-ref's, CPU per query; bench/levers.py) or memory (RSS against raw "
        "hnswlib; bench/memory.py) or peers (Chroma and Milvus Lite against knn-serve) or "
        "kmeans (training against scikit-learn, /v1/assign against KMeans.predict; "
        "bench/kmeans.py)",
    )
    ap.add_argument(
        "--dataset",
        choices=sorted(DATASETS),
        default="bench",
        help="bench: --n x --dim clustered, l2 (search ~250 us); cheap: 60,000 x 96 cosine, "
        "wide clusters (search ~100 us), the cheap-search dataset of the serving targets",
    )
    ap.add_argument(
        "--artifact", type=Path, help="serve this artifact instead of building one (not builder)"
    )
    ap.add_argument("--baseline-ref", default="main", help="--only levers: the git ref to beat")
    ap.add_argument(
        "--cores", default="", help="--only levers: pin both servers with taskset (e.g. 0)"
    )
    ap.add_argument(
        "--candidate-flags",
        default="",
        help='--only levers: knn-serve flags of the candidate only (e.g. "--workers 2")',
    )
    operator_scale.add_arguments(ap)
    ap.set_defaults(metric="l2")  # the dataset's, once chosen
    return ap


@dataclass(frozen=True)
class Dataset:
    n: int | None  # None: --n and --dim
    dim: int | None
    metric: str
    latent: int = 24
    spread: float = 0.6


DATASETS = {
    "bench": Dataset(None, None, "l2"),
    # bench/recall.py's space: wide clusters, searches about 100 us at ef 64.
    "cheap": Dataset(60_000, 96, "cosine", latent=96, spread=1.0),
}


def dataset(
    args: argparse.Namespace,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], str]:
    """Data, 2,000 queries from the same space (another seed), metric; sets args.n/dim."""
    ds = DATASETS[args.dataset]
    args.n, args.dim = ds.n or args.n, ds.dim or args.dim
    data = clustered(args.n, args.dim, seed=7, latent=ds.latent, spread=ds.spread)
    queries = sample(2_000, args.dim, seed=7, sample_seed=1007, latent=ds.latent, spread=ds.spread)
    return data, queries, ds.metric


def ratio_rows(
    label: str, baseline_name: str, ratio: paired.PairedRatio, loader: Loader, target: str
) -> Rows:
    kept = [loader.results[p.attempt] for p in ratio.pairs]
    p50 = statistics.median(r.p50_ms for r in kept)
    p99 = statistics.median(r.p99_ms for r in kept)
    return [
        (baseline_name, f"{ratio.baseline:,.0f} q/s"),
        (
            f"knn-serve {label}, 1 worker",
            f"{ratio.candidate:,.0f} q/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
            f"{loader.cpu_us(ratio)} us server CPU per query",
        ),
        (f"**{label} ratio** (target {target})", f"**{ratio.describe()}**"),
    ]


def builder_rows(args: argparse.Namespace, d: Path, data: npt.NDArray[np.float32]) -> Rows:
    """Raw add_items (same threads, params, seed) vs knn-build end to end, in pairs."""
    threads = available_cpus()

    def raw_build() -> float:
        raw = hnswlib.Index(space=args.metric, dim=args.dim)
        raw.init_index(
            max_elements=args.n, ef_construction=args.ef_construction, M=args.m, random_seed=42
        )
        t = time.perf_counter()
        raw.add_items(data, np.arange(args.n), num_threads=threads)
        return float(args.n / (time.perf_counter() - t))

    builds = iter(range(1_000))

    def knn_build() -> float:
        t = time.perf_counter()
        subprocess.run(
            [
                str(KNN_BUILD),
                *("--source", str(d / "data.npy"), "--metric", args.metric),
                *("--m", str(args.m), "--ef-construction", str(args.ef_construction)),
                *("--ef-search", str(args.ef), "--probe-queries", "500", "--k", str(args.k)),
                *("--min-recall", "0.8", "--threads", str(threads)),
                *("--version", f"bench{next(builds)}", "--out", str(d / "out")),
                *("--summary-file", str(d / "summary.json"), "--log-level", "WARNING"),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return float(args.n / (time.perf_counter() - t))

    r = paired.measure(raw_build, knn_build, args.build_repeats, max_steal=args.max_steal)
    return [
        (f"builder raw add_items ({threads} threads)", f"{r.baseline:,.0f} vectors/s"),
        ("builder knn-build end-to-end", f"{r.candidate:,.0f} vectors/s"),
        ("**builder ratio** (target >= 0.85)", f"**{r.describe()}**"),
    ]


def serving_rows(
    args: argparse.Namespace,
    index: hnswlib.Index,
    url: str,
    load: npt.NDArray[np.float32],
    pid: int,
) -> tuple[Rows, list[bytes], float]:
    """Server (process `pid`) vs raw hnswlib on the same queries; also the single-query
    bodies and peak."""
    k = args.k
    single_bodies = [orjson.dumps({"vector": q.tolist(), "k": k}) for q in load]
    starts = range(0, len(load), 64)
    batch_bodies = [orjson.dumps({"vectors": load[i : i + 64].tolist(), "k": k}) for i in starts]
    binary_bodies = [load[i : i + 64].astype("<f4").tobytes() for i in starts]

    def raw_single() -> float:
        return qps_single(index, load, k, args.seconds)

    def raw_batch() -> float:
        return qps_batch(index, load, k, 64, args.seconds)

    s = args.seconds
    single = Loader(url, "/v1/query", single_bodies, args.connections, s, pid=pid)
    batches: list[tuple[str, Loader]] = [
        ("64-query JSON batches", Loader(url, "/v1/query", batch_bodies, 4, s, JSON, 64)),
        (
            "64-query float32 batches",
            Loader(url, f"/v1/query?k={k}", binary_bodies, 4, s, "application/octet-stream", 64),
        ),
    ]
    rows: Rows = []
    r = paired.measure(raw_single, single, args.rounds, max_steal=args.max_steal)
    peak = r.candidate
    rows += ratio_rows(
        "single JSON queries",
        "raw hnswlib single queries, 1 thread",
        r,
        single,
        ">= 0.5 cheap, >= 0.55 bench",
    )
    print(*rows[-3:], sep="\n", flush=True)
    for label, loader in batches:
        r = paired.measure(raw_batch, loader, args.rounds, max_steal=args.max_steal)
        rows += ratio_rows(label, "raw hnswlib 64-query batches, 1 thread", r, loader, ">= 0.90")
        print(*rows[-3:], sep="\n", flush=True)
    return rows, single_bodies, peak


def peer_rows(
    args: argparse.Namespace,
    d: Path,
    data: npt.NDArray[np.float32],
    load: npt.NDArray[np.float32],
    truth: npt.NDArray[np.int64],
    ours: Loader,
) -> Rows:
    """knn-serve vs Chroma's server: single JSON queries, same data, HNSW parameters
    and load generator; recall of both on the same queries."""
    k = args.k
    with chroma.running(d / "chroma-data", d / "logs") as peer:
        collection = peer.create(
            "bench", space=args.metric, m=args.m, ef_construction=args.ef_construction, ef=args.ef
        )
        t = time.perf_counter()
        peer.add(collection, data)
        added = time.perf_counter() - t
        print(f"chroma: {len(data):,} vectors added in {added:.1f}s", flush=True)
        peer_recall = recall_at_k(peer.labels(collection, load[:500], k), truth[:500])
        bodies = [orjson.dumps(peer.query_body(q, k)) for q in load]
        theirs = Loader(
            peer.url,
            peer.query_path(collection),
            bodies,
            args.connections,
            args.seconds,
            pid=peer.process.pid,
        )
        r = paired.measure(theirs, ours, args.rounds, max_steal=args.max_steal)
    version = chroma.pinned_version()
    return [
        (
            f"Chroma {version} recall@{k} (same M, efConstruction, ef; first 500 queries)",
            f"{peer_recall:.4f}",
        ),
        (
            f"Chroma {version} single JSON queries (`chroma run`, wrk, {args.connections} conns)",
            f"{r.baseline:,.0f} q/s",
        ),
        (
            "Chroma: insert through its HTTP API (not compared)",
            f"{len(data) / added:,.0f} vectors/s",
        ),
        (
            "server CPU per query (all threads, /proc), Chroma / knn-serve",
            f"{theirs.cpu_us(r)} / {ours.cpu_us(r)} us",
        ),
        ("**knn-serve / Chroma single queries** (target >= 8)", f"**{r.describe()}**"),
    ]


def milvus_rows(
    args: argparse.Namespace,
    d: Path,
    load: npt.NDArray[np.float32],
    truth: npt.NDArray[np.int64],
    ours: Loader,
) -> Rows:
    """knn-serve (single JSON over HTTP, wrk) vs Milvus Lite (embedded: single-vector
    searches from as many threads as wrk has connections), same data and HNSW
    parameters; CPU-seconds per query of each process."""
    np.save(d / "queries.npy", load)
    argv = [args.metric, str(args.m), str(args.ef_construction), str(args.ef), str(args.k)]
    theirs = milvus.MilvusLite(
        d / "data.npy", d / "queries.npy", [*argv, str(args.connections), str(args.seconds)]
    )
    print(f"milvus-lite: built in {theirs.insert_seconds:.1f}s", flush=True)
    r = paired.measure(theirs, ours, args.rounds, max_steal=args.max_steal)
    found = np.array(theirs.labels(), dtype=np.int64)
    cpu = 1e6 * statistics.median(theirs.cpu_per_query[p.attempt] for p in r.pairs)
    version = milvus.pinned_version()
    return [
        (
            f"Milvus Lite {version} recall@{args.k} (first 500 queries)",
            f"{recall_at_k(found, truth[:500]):.4f}",
        ),
        (
            f"Milvus Lite {version} single-vector searches, in process, {args.connections} threads",
            f"{r.baseline:,.0f} q/s",
        ),
        ("CPU per query, Milvus Lite / knn-serve", f"{cpu:.0f} / {ours.cpu_us(r)} us"),
        ("**knn-serve / Milvus Lite single queries**", f"**{r.describe()}**"),
    ]


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.only == "operator":
        return operator_scale.main(args)
    k = args.k
    rows: Rows = []
    with tempfile.TemporaryDirectory(prefix="knn-bench-") as tmp:
        d = Path(tmp)
        if args.only in (None, "recall"):
            rows += recall_rows(d)
        if args.only == "recall":
            _print_table(args, rows)
            return 0
        if args.only == "kmeans":
            rows += kmeans.kmeans_rows(args, d)
            _print_table(args, rows, kmeans.PARAMS)
            return 0
        if args.only == "memory" and args.artifact is not None:
            # The artifact's data are not needed, only queries of its dimension.
            queries = sample(1_024, args.dim, seed=7, sample_seed=1007)
            rows += memory_rows(args, args.artifact, d / "logs", queries)
            _print_table(args, rows)
            return 0
        data, queries, args.metric = dataset(args)
        print(f"dataset {args.dataset}: {args.n} x {args.dim} clustered, {args.metric}", flush=True)
        if args.artifact is not None:
            artifact = args.artifact
        else:
            np.save(d / "data.npy", data)
            if args.only is None:
                rows += builder_rows(args, d, data)
                print(*rows[-3:], sep="\n", flush=True)
            else:
                _build_only(args, d)
            artifact = d / "out" / "bench0"
        if args.only == "memory":
            rows += memory_rows(args, artifact, d / "logs", queries)
            _print_table(args, rows)
            return 0
        index = hnswlib.Index(space=args.metric, dim=args.dim)
        index.load_index(str(artifact / "index.bin"))
        index.set_ef(args.ef)
        truth = exact_topk(data, queries, k, args.metric)
        labels, _ = index.knn_query(queries, k=k, num_threads=available_cpus())
        recall = recall_at_k(labels.astype(np.int64), truth)
        rows.append((f"recall@{k} at ef={args.ef} (2000 held-out queries)", f"{recall:.4f}"))

        # Both sides of every throughput ratio cycle through the same queries:
        # some queries cost more than others, so different sets would bias it.
        load = queries[:1024]
        if args.only == "live":
            rows += _live_section(args, artifact, d / "logs", load)
            _print_table(args, rows)
            return 0
        if args.only == "peers":
            rows += _peers_only(args, d, data, load, truth, artifact)
            _print_table(args, rows)
            return 0
        if args.only == "levers":
            rows += lever_rows(args, artifact, d / "logs", index, load)
            _print_table(args, rows)
            return 0
        server_args = ["--log-level", "warning", "--workers", "1", "--batch-threads", "1"]
        with serve(artifact, d / "logs", args=server_args, timeout=120) as server:
            url = server.url
            got = httpx.post(
                url + "/v1/query", json={"vectors": queries[:500].tolist(), "k": k}, timeout=60
            ).json()
            srv_labels = np.array([r["ids"] for r in got["results"]], dtype=np.int64)
            srv_recall = recall_at_k(srv_labels, truth[:500])
            rows.append(("knn-serve recall on the same queries (first 500)", f"{srv_recall:.4f}"))

            served, single_bodies, peak = serving_rows(args, index, url, load, server.child.pid)
            rows += served
            half = latency.at_half_peak(
                url,
                "/v1/query",
                single_bodies,
                peak=peak,
                seconds=2 * args.seconds,
                runs=5,
                max_steal=args.max_steal,
                content_type=JSON,
            )
            rows.append(half)
            print(half, flush=True)
            if not args.no_peer:
                ours = Loader(
                    url,
                    "/v1/query",
                    single_bodies,
                    args.connections,
                    args.seconds,
                    pid=server.child.pid,
                )
                rows += peer_rows(args, d, data, load, truth, ours)
                print(*rows[-5:], sep="\n", flush=True)
                ours.results.clear()
                ours.cpu_per_query.clear()
                if not (d / "data.npy").exists():  # served from --artifact
                    np.save(d / "data.npy", data)
                rows += milvus_rows(args, d, load, truth, ours)
                print(*rows[-4:], sep="\n", flush=True)
        rows += _live_section(args, artifact, d / "logs", load)
        if args.only is None:
            rows += kmeans.kmeans_rows(args, d)
    _print_table(args, rows)
    return 0


def _peers_only(
    args: argparse.Namespace,
    d: Path,
    data: npt.NDArray[np.float32],
    load: npt.NDArray[np.float32],
    truth: npt.NDArray[np.int64],
    artifact: Path,
) -> Rows:
    """The peer comparisons alone (--only peers), against one knn-serve."""
    bodies = [orjson.dumps({"vector": q.tolist(), "k": args.k}) for q in load]
    flags = ["--log-level", "warning", "--workers", "1", "--batch-threads", "1"]
    with serve(artifact, d / "logs", args=flags, timeout=120) as server:

        def ours() -> Loader:
            return Loader(
                server.url,
                "/v1/query",
                bodies,
                args.connections,
                args.seconds,
                pid=server.child.pid,
            )

        np.save(d / "data.npy", data)
        return [
            *peer_rows(args, d, data, load, truth, ours()),
            *milvus_rows(args, d, load, truth, ours()),
        ]


def _live_section(
    args: argparse.Namespace, artifact: Path, logs: Path, load: npt.NDArray[np.float32]
) -> Rows:
    """Live recall on against off, with the single-query bodies of the serving section."""
    bodies = [orjson.dumps({"vector": q.tolist(), "k": args.k}) for q in load]
    return live_rows(
        args,
        artifact,
        logs,
        lambda url: Loader(url, "/v1/query", bodies, args.connections, args.seconds),
    )


def _build_only(args: argparse.Namespace, d: Path) -> None:
    """The serving artifact, when the builder ratio is not measured."""
    subprocess.run(
        [
            str(KNN_BUILD),
            *("--source", str(d / "data.npy"), "--metric", args.metric),
            *("--m", str(args.m), "--ef-construction", str(args.ef_construction)),
            *("--ef-search", str(args.ef), "--probe-queries", "500", "--k", str(args.k)),
            *("--min-recall", "0.8", "--version", "bench0", "--out", str(d / "out")),
            "--log-level",
            "WARNING",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def _print_table(args: argparse.Namespace, rows: Rows, params: str | None = None) -> None:
    params = params or (
        f"{args.n} x {args.dim} {args.metric}, M={args.m}, efC={args.ef_construction}, "
        f"ef={args.ef}, k={args.k}"
    )
    print()
    print(f"load average at the end: {load_average()} (a shared machine: see docs/benchmarks.md)")
    print(f"| measure ({params}) | result |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except paired.TooNoisyError as e:
        sys.exit(f"bench: {e}")
