"""`make demo`: the main job on an embedded default.

Generates a seeded sample of 20,000 document embeddings, builds a versioned
index with the real `knn-build`, serves it with the real `knn-serve` on
loopback, waits for readiness, and shows queries, live recall and metrics.
The local Kubernetes stack replaces this once it lands (DESIGN section 5).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np

from .knnserve import KNN_BUILD, serve
from .procs import ProcessError
from .synthetic import clustered, sample

_READY_TIMEOUT = 120.0


def _say(text: str) -> None:
    print(f"==> {text}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m knn_devtools.demo", description=__doc__)
    ap.add_argument("--dir", type=Path, default=Path(".local/demo"), help="work directory")
    ap.add_argument("--vectors", type=int, default=20_000)
    ap.add_argument("--dimension", type=int, default=64)
    ap.add_argument("--serve", action="store_true", help="keep serving until Ctrl-C")
    args = ap.parse_args(argv)
    work: Path = args.dir
    work.mkdir(parents=True, exist_ok=True)

    source, ids = work / "products.npy", work / "products-ids.json"
    _say(f"writing a seeded sample: {args.vectors} x {args.dimension} embeddings to {source}")
    np.save(source, clustered(args.vectors, args.dimension, seed=11))
    ids.write_text("[" + ",".join(f'"sku-{i:06d}"' for i in range(args.vectors)) + "]\n")

    _say("knn-build: load, build HNSW, validate recall on held-out probes, write the artifact")
    build = subprocess.run(
        [
            str(KNN_BUILD),
            "--source",
            str(source),
            "--ids",
            str(ids),
            "--metric",
            "cosine",
            "--m",
            "16",
            "--ef-construction",
            "200",
            "--ef-search",
            "64",
            "--probe-queries",
            "500",
            "--k",
            "10",
            "--min-recall",
            "0.9",
            "--out",
            str(work / "artifacts"),
            "--summary-file",
            str(work / "summary.json"),
        ],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if build.returncode != 0:
        return build.returncode
    summary = build.stdout.strip().splitlines()[-1]
    print(f"    summary: {summary}")
    version = json.loads(summary)["version"]
    artifact = work / "artifacts" / version

    try:
        _serve_and_query(artifact, version, work / "logs", args.dimension, keep_serving=args.serve)
    except ProcessError as err:
        raise SystemExit(f"demo: {err}") from None
    _say("done")
    return 0


def _serve_and_query(
    artifact: Path, version: str, log_dir: Path, dimension: int, *, keep_serving: bool
) -> None:
    with serve(
        artifact,
        log_dir,
        ready=False,
        index_name="products",
        namespace="demo",
        args=["--probe-interval", "10", "--log-level", "warning"],
        timeout=_READY_TIMEOUT,
    ) as server:
        url = server.url
        _say(f"knn-serve: serving version {version} on {url}")
        server.wait_ready(_READY_TIMEOUT)
        query = sample(1, dimension, seed=11, sample_seed=2024)[0]
        _say("POST /v1/query {vector, k: 5}")
        r = httpx.post(url + "/v1/query", json={"vector": query.tolist(), "k": 5}, timeout=10)
        r.raise_for_status()
        for i, (doc, dist) in enumerate(zip(r.json()["ids"], r.json()["distances"], strict=True)):
            print(f"    {i + 1}. {doc}  cosine distance {dist:.4f}")
        bad = httpx.post(url + "/v1/query", json={"vector": [1.0, 2.0], "k": 5}, timeout=10)
        _say(f"bad input is refused: HTTP {bad.status_code} {bad.json()['detail']}")
        _say("GET /metrics (recall from the continuous probe replay, identity labels):")
        for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
            if line.startswith(("knn_recall_ratio", "knn_index_vectors", "knn_requests_total")):
                print(f"    {line}")
        if keep_serving:
            _say(f"serving on {url} until Ctrl-C (try: curl {url}/v1/info)")
            with contextlib.suppress(KeyboardInterrupt):
                server.child.wait()


if __name__ == "__main__":
    sys.exit(main())
