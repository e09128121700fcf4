"""`make bench`: data-plane benchmarks, each printed as a ratio to its baseline.

Baselines run in this same process (raw hnswlib) on the same data, index and
ef, so the ratios hold whatever the machine's speed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import hnswlib
import httpx
import numpy as np
import orjson
from knn_devtools.knnserve import KNN_BUILD, serve
from knn_devtools.synthetic import clustered, sample
from knn_serving.cpus import available_cpus
from knn_serving.exact import exact_topk, recall_at_k

from . import wrk


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
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3, help="best of this many runs per measure")
    ap.add_argument("--build-repeats", type=int, default=2)
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
        # end, interleaved and best of --build-repeats, so a burst of other load
        # hits both sides alike.
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

        raw_add, e2e = float("inf"), float("inf")
        for i in range(args.build_repeats):
            raw_add = min(raw_add, raw_build())
            e2e = min(e2e, knn_build("bench" if i == 0 else f"bench{i}"))
        rows.append(
            ("builder raw add_items", f"{args.n / raw_add:,.0f} vectors/s ({raw_add:.1f}s)")
        )
        rows.append(("builder knn-build end-to-end", f"{args.n / e2e:,.0f} vectors/s ({e2e:.1f}s)"))
        rows.append(("**builder ratio** (target >= 0.85)", f"**{raw_add / e2e:.2f}**"))
        print(*rows[-3:], sep="\n", flush=True)

        artifact = d / "out" / "bench"
        index = hnswlib.Index(space="l2", dim=args.dim)
        index.load_index(str(artifact / "index.bin"))
        index.set_ef(args.ef)
        truth = exact_topk(data, queries, k, "l2")
        labels, _ = index.knn_query(queries, k=k, num_threads=threads)
        recall = recall_at_k(labels.astype(np.int64), truth)
        rows.append((f"recall@{k} at ef={args.ef} (2000 held-out queries)", f"{recall:.4f}"))

        # Best of several short runs on both sides: a burst of other load on a
        # shared machine then lowers neither the baseline nor the server alone.
        reps = range(args.repeats)
        raw_single = max(qps_single(index, queries, k, args.seconds / 2) for _ in reps)
        raw_batch = max(qps_batch(index, queries, k, 64, args.seconds / 2) for _ in reps)
        rows.append(("raw hnswlib single queries, 1 thread", f"{raw_single:,.0f} q/s"))
        rows.append(("raw hnswlib 64-query batches, 1 thread", f"{raw_batch:,.0f} q/s"))
        print(*rows[-3:], sep="\n", flush=True)

        single_bodies = [orjson.dumps({"vector": q.tolist(), "k": k}) for q in queries[:200]]
        batch_bodies = [
            orjson.dumps({"vectors": queries[i : i + 64].tolist(), "k": k})
            for i in range(0, 640, 64)
        ]
        binary_bodies = [queries[i : i + 64].astype("<f4").tobytes() for i in range(0, 640, 64)]
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

            def best(path: str, bodies: list[bytes], conns: int, ctype: str) -> wrk.WrkResult:
                runs = [
                    wrk.run(
                        url,
                        path,
                        bodies,
                        connections=conns,
                        seconds=args.seconds,
                        content_type=ctype,
                    )
                    for _ in reps
                ]
                return max(runs, key=lambda r: r.requests_per_second)

            s = best("/v1/query", single_bodies, args.connections, "application/json")
            b = best("/v1/query", batch_bodies, 4, "application/json")
            bb = best(f"/v1/query?k={k}", binary_bodies, 4, "application/octet-stream")
        for r in (s, b, bb):
            if r.non_2xx or r.errors:
                raise SystemExit(f"wrk saw {r.non_2xx} non-2xx and {r.errors} socket errors")
        for label, res, per, base, target in (
            ("single JSON queries", s, 1, raw_single, 0.35),
            ("64-query JSON batches", b, 64, raw_batch, 0.90),
            ("64-query float32 batches", bb, 64, raw_batch, 0.90),
        ):
            qps = res.requests_per_second * per
            rows.append(
                (
                    f"knn-serve {label}, 1 worker",
                    f"{qps:,.0f} q/s, p50 {res.p50_ms:.2f} ms, p99 {res.p99_ms:.2f} ms",
                )
            )
            rows.append((f"**{label} ratio** (target >= {target})", f"**{qps / base:.2f}**"))

    params = f"{args.n} x {args.dim}, M={args.m}, efC={args.ef_construction}, ef={args.ef}, k={k}"
    print()
    print(f"| measure ({params}) | result |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
