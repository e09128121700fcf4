"""`make bench`: data-plane benchmarks, each printed as a ratio to its baseline.

Baselines run in this same process (raw hnswlib) on the same data, index, ef
and queries, so the ratios hold whatever the machine's speed. Each ratio is the
median of alternating baseline/server pairs, re-measuring a pair during which
the hypervisor stole CPU time (paired.py).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import hnswlib
import httpx
import numpy as np
import orjson
from knn_devtools.knnserve import KNN_BUILD, serve
from knn_devtools.synthetic import clustered, sample
from knn_serving.cpus import available_cpus
from knn_serving.exact import exact_topk, recall_at_k

from . import paired, wrk

JSON = "application/json"


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


def main(argv: list[str] | None = None) -> int:
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
    args = ap.parse_args(argv)
    threads = available_cpus()
    k = args.k
    rows: list[tuple[str, str]] = []

    with tempfile.TemporaryDirectory(prefix="knn-bench-") as tmp:
        d = Path(tmp)
        data = clustered(args.n, args.dim, seed=7)
        queries = sample(2_000, args.dim, seed=7, sample_seed=1007)
        np.save(d / "data.npy", data)
        print(f"dataset: {args.n} x {args.dim} clustered (seed 7), {threads} threads", flush=True)

        # Builder: raw add_items (same threads, params, seed) vs knn-build end to
        # end, in alternating pairs (see paired.py).
        def raw_build() -> float:
            raw = hnswlib.Index(space="l2", dim=args.dim)
            raw.init_index(
                max_elements=args.n,
                ef_construction=args.ef_construction,
                M=args.m,
                random_seed=42,
            )
            t = time.perf_counter()
            raw.add_items(data, np.arange(args.n), num_threads=threads)
            return time.perf_counter() - t

        def knn_build(version: str) -> float:
            t = time.perf_counter()
            subprocess.run(
                [
                    str(KNN_BUILD),
                    "--source",
                    str(d / "data.npy"),
                    "--metric",
                    "l2",
                    "--m",
                    str(args.m),
                    "--ef-construction",
                    str(args.ef_construction),
                    "--ef-search",
                    str(args.ef),
                    "--probe-queries",
                    "500",
                    "--k",
                    str(k),
                    "--min-recall",
                    "0.8",
                    "--threads",
                    str(threads),
                    "--version",
                    version,
                    "--summary-file",
                    str(d / "summary.json"),
                    "--out",
                    str(d / "out"),
                    "--log-level",
                    "WARNING",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            return time.perf_counter() - t

        builds = iter(range(1_000))
        builder = paired.measure(
            lambda: args.n / raw_build(),
            lambda: args.n / knn_build(f"bench{next(builds)}"),
            args.build_repeats,
            max_steal=args.max_steal,
        )
        rows.append(("builder raw add_items", f"{builder.baseline:,.0f} vectors/s"))
        rows.append(("builder knn-build end-to-end", f"{builder.candidate:,.0f} vectors/s"))
        rows.append(("**builder ratio** (target >= 0.85)", f"**{builder.describe()}**"))
        print(*rows[-3:], sep="\n", flush=True)

        artifact = d / "out" / "bench0"
        index = hnswlib.Index(space="l2", dim=args.dim)
        index.load_index(str(artifact / "index.bin"))
        index.set_ef(args.ef)
        truth = exact_topk(data, queries, k, "l2")
        labels, _ = index.knn_query(queries, k=k, num_threads=threads)
        recall = recall_at_k(labels.astype(np.int64), truth)
        rows.append((f"recall@{k} at ef={args.ef} (2000 held-out queries)", f"{recall:.4f}"))

        # Both sides of every throughput ratio cycle through the same queries:
        # some queries cost more than others, so different sets would bias it.
        load = queries[:1024]
        single_bodies = [orjson.dumps({"vector": q.tolist(), "k": k}) for q in load]
        batch_bodies = [
            orjson.dumps({"vectors": load[i : i + 64].tolist(), "k": k})
            for i in range(0, len(load), 64)
        ]
        binary_bodies = [load[i : i + 64].astype("<f4").tobytes() for i in range(0, len(load), 64)]
        with serve(
            artifact,
            d / "logs",
            args=["--log-level", "warning", "--workers", "1", "--batch-threads", "1"],
            timeout=120,
        ) as server:
            url = server.url
            # The server's answers give the same recall as the raw index.
            got = httpx.post(
                url + "/v1/query", json={"vectors": queries[:500].tolist(), "k": k}, timeout=60
            ).json()
            srv_labels = np.array([r["ids"] for r in got["results"]], dtype=np.int64)
            rows.append(
                ("server recall on the same queries", f"{recall_at_k(srv_labels, truth[:500]):.4f}")
            )

            def served(
                path: str, bodies: list[bytes], conns: int, ctype: str, per: int
            ) -> tuple[Callable[[], float], list[wrk.WrkResult]]:
                runs: list[wrk.WrkResult] = []

                def once() -> float:
                    r = wrk.run(
                        url,
                        path,
                        bodies,
                        connections=conns,
                        seconds=args.seconds,
                        content_type=ctype,
                    )
                    if r.non_2xx or r.errors:
                        raise SystemExit(
                            f"wrk on {path}: {r.non_2xx} non-2xx responses; {r.error_detail}"
                        )
                    runs.append(r)
                    return r.requests_per_second * per

                return once, runs

            def raw_single() -> float:
                return qps_single(index, load, k, args.seconds)

            def raw_batch() -> float:
                return qps_batch(index, load, k, 64, args.seconds)

            for label, base, (run, runs), target in (
                (
                    "single JSON queries",
                    raw_single,
                    served("/v1/query", single_bodies, args.connections, JSON, 1),
                    0.35,
                ),
                (
                    "64-query JSON batches",
                    raw_batch,
                    served("/v1/query", batch_bodies, 4, JSON, 64),
                    0.90,
                ),
                (
                    "64-query float32 batches",
                    raw_batch,
                    served(f"/v1/query?k={k}", binary_bodies, 4, "application/octet-stream", 64),
                    0.90,
                ),
            ):
                ratio = paired.measure(base, run, args.rounds, max_steal=args.max_steal)
                p50 = statistics.median(runs[p.attempt].p50_ms for p in ratio.pairs)
                p99 = statistics.median(runs[p.attempt].p99_ms for p in ratio.pairs)
                rows.append(
                    (
                        f"raw hnswlib {label.split(' ', 1)[0]} baseline, 1 thread",
                        f"{ratio.baseline:,.0f} q/s",
                    )
                )
                rows.append(
                    (
                        f"knn-serve {label}, 1 worker",
                        f"{ratio.candidate:,.0f} q/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms",
                    )
                )
                rows.append((f"**{label} ratio** (target >= {target})", f"**{ratio.describe()}**"))
                print(*rows[-3:], sep="\n", flush=True)

    params = f"{args.n} x {args.dim}, M={args.m}, efC={args.ef_construction}, ef={args.ef}, k={k}"
    print()
    print(f"| measure ({params}) | result |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except paired.TooNoisyError as e:
        sys.exit(f"bench: {e}")
