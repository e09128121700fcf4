"""k-means (ClusterModel) benchmarks, each a paired ratio against a baseline in
this process (paired.py):

* training: `knn-build --kind kmeans` end to end (process start, source read,
  hold-out, fit, silhouette, assignment, artifact write) against scikit-learn's
  `KMeans.fit` called directly with the same parameters and thread limit on the
  same number of rows; the build's own fit+assign+silhouette time (its elbow
  point) is reported beside it, to separate the fit from the process around it;
* assignment: `knn-serve --model-name` over HTTP (wrk: single JSON, 64-vector JSON
  and float32 batches) against `KMeans.predict` in process on the same vectors,
  the model's centroids being the ones the server loaded.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import orjson
from knn_devtools.knnserve import KNN_BUILD, serve
from knn_serving.centroids import nearest_centroid
from knn_serving.cpus import available_cpus
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from . import paired
from .loader import JSON, Loader

Rows = list[tuple[str, str]]

N, DIM, CLUSTERS, N_INIT, SEED = 100_000, 64, 32, 3, 42
HELD_OUT = 500  # --probe-queries: rows the build keeps out of training
BATCH = 64
PARAMS = f"k-means: {N:,} x {DIM} blobs, k={CLUSTERS}, n_init={N_INIT}"


def blobs(n: int, seed: int) -> npt.NDArray[np.float32]:
    """CLUSTERS separated Gaussian blobs (fixed centres); `seed` draws the points."""
    centres = np.random.default_rng(7).normal(scale=4.0, size=(CLUSTERS, DIM))
    rng = np.random.default_rng(seed)
    return (centres[rng.integers(0, CLUSTERS, n)] + rng.normal(size=(n, DIM))).astype(np.float32)


def sklearn_model() -> KMeans:
    return KMeans(
        n_clusters=CLUSTERS,
        init="k-means++",
        n_init=N_INIT,
        max_iter=300,
        algorithm="lloyd",
        random_state=SEED,
    )


def training_rows(args: argparse.Namespace, d: Path) -> tuple[Rows, Path]:
    """Rows, and the artifact of the last build (for the assignment section)."""
    data = blobs(N, seed=1)
    np.save(d / "kmeans-data.npy", data)
    train = data[: N - HELD_OUT]  # as many rows as the build trains on
    threads = available_cpus()
    builds: list[Path] = []
    elbow_seconds: list[float] = []

    def direct() -> float:
        model = sklearn_model()
        t = time.perf_counter()
        with threadpool_limits(limits=threads):
            model.fit(train)
        return len(train) / (time.perf_counter() - t)

    def knn_build() -> float:
        version = f"km{len(builds)}"
        t = time.perf_counter()
        subprocess.run(
            [
                str(KNN_BUILD),
                *("--kind", "kmeans", "--source", str(d / "kmeans-data.npy")),
                *("--clusters", str(CLUSTERS), "--n-init", str(N_INIT), "--seed", str(SEED)),
                *("--probe-queries", str(HELD_OUT), "--threads", str(threads)),
                *("--version", version, "--out", str(d / "kmeans-out"), "--log-level", "WARNING"),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        rate = len(train) / (time.perf_counter() - t)
        builds.append(d / "kmeans-out" / version)
        manifest = json.loads((builds[-1] / "manifest.json").read_text())
        elbow_seconds.append(float(manifest["validation"]["elbow"][0]["seconds"]))
        return rate

    r = paired.measure(direct, knn_build, args.build_repeats, max_steal=args.max_steal)
    fit = len(train) / r.baseline
    return [
        (
            f"scikit-learn KMeans.fit direct ({len(train):,} x {DIM}, k={CLUSTERS}, "
            f"n_init={N_INIT}, {threads} threads)",
            f"{fit:.2f} s",
        ),
        (
            "knn-build --kind kmeans end to end (same rows, parameters, threads)",
            f"{len(train) / r.candidate:.2f} s; its fit + assignment + silhouette "
            f"{sorted(elbow_seconds)[len(elbow_seconds) // 2]:.2f} s",
        ),
        ("**k-means training ratio** (scikit-learn time / knn-build time)", f"**{r.describe()}**"),
    ], builds[-1]


def assignment_rows(args: argparse.Namespace, d: Path, artifact: Path) -> Rows:
    centroids = np.load(artifact / "centroids.npy")
    model = sklearn_model()
    # predict() needs a fitted estimator: fit one iteration from the server's own
    # centroids, then put them back (the fit moved them), so both sides assign to the
    # same centres.
    model.set_params(init=centroids, n_init=1, max_iter=1)
    model.fit(centroids)
    model.cluster_centers_ = centroids.astype(model.cluster_centers_.dtype)
    load = blobs(1_024, seed=2)
    expected, _ = nearest_centroid(load, centroids)
    assert (model.predict(load) == expected).all(), "predict and the server's function differ"

    def predict_single() -> float:
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < args.seconds:
            for i in range(len(load)):
                model.predict(load[i : i + 1])
            n += len(load)
        return n / (time.perf_counter() - start)

    def predict_batch() -> float:
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < args.seconds:
            for i in range(0, len(load), BATCH):
                model.predict(load[i : i + BATCH])
                n += BATCH
        return n / (time.perf_counter() - start)

    starts = range(0, len(load), BATCH)
    single = [orjson.dumps({"vector": v.tolist()}) for v in load]
    batches = [orjson.dumps({"vectors": load[i : i + BATCH].tolist()}) for i in starts]
    binary = [load[i : i + BATCH].astype("<f4").tobytes() for i in starts]
    flags = ["--model-name", "bench", "--log-level", "warning", "--workers", "1"]
    rows: Rows = []
    with serve(artifact, d / "kmeans-logs", args=flags, timeout=120) as server:
        with server.client() as c:
            got = c.post("/v1/assign", json={"vectors": load.tolist()}).json()
        served = np.array([r["cluster"] for r in got["results"]])
        agree = float((served == expected).mean())
        rows.append(
            ("assignments over HTTP equal in-process predict (1,024 vectors)", f"{agree:.4f}")
        )
        pid, url, s = server.child.pid, server.url, args.seconds
        sides = [
            ("single JSON", "single vectors", predict_single,
             Loader(url, "/v1/assign", single, args.connections, s, pid=pid)),
            ("64-vector JSON batches", "64-vector batches", predict_batch,
             Loader(url, "/v1/assign", batches, 4, s, JSON, BATCH, pid=pid)),
            ("64-vector float32 batches", "64-vector batches", predict_batch,
             Loader(url, "/v1/assign", binary, 4, s, "application/octet-stream", BATCH, pid=pid)),
        ]  # fmt: skip
        for label, direct_label, baseline, loader in sides:
            r = paired.measure(baseline, loader, args.rounds, max_steal=args.max_steal)
            rows += [
                (f"KMeans.predict in process, {direct_label}", f"{r.baseline:,.0f} vectors/s"),
                (
                    f"knn-serve /v1/assign, {label}, 1 worker",
                    f"{r.candidate:,.0f} vectors/s, {loader.cpu_us(r)} us server CPU per vector",
                ),
                (f"**assignment ratio, {label}** (over HTTP / in process)", f"**{r.describe()}**"),
            ]  # fmt: skip
            print(*rows[-3:], sep="\n", flush=True)
    return rows


def kmeans_rows(args: argparse.Namespace, d: Path) -> Rows:
    rows, artifact = training_rows(args, d)
    print(*rows, sep="\n", flush=True)
    return rows + assignment_rows(args, d, artifact)
