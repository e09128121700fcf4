"""Recall the gate, the gauge and the former method report, against new queries.

The dataset is harder than the serving bench's (a 96-dimensional latent space,
wide clusters), so recall moves visibly with efSearch. Every number comes from
the real commands: `knn-build` writes the curve (the gate's number), a
`knn-serve` per efSearch replays its probes (the gauge) and answers 2,000 new
queries over HTTP, judged against exact search. The former leave-one-out method
(every row in the graph, each probe's own row dropped from its answer) is
rebuilt here with raw hnswlib, the same parameters and the same probe rows.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import hnswlib
import httpx
import numpy as np
import numpy.typing as npt
from knn_contracts.artifact import Manifest, recall_at
from knn_devtools.knnserve import KNN_BUILD, serve
from knn_devtools.synthetic import clustered
from knn_serving.artifact import Probes
from knn_serving.cpus import available_cpus
from knn_serving.exact import drop_self, exact_topk, recall_at_k

N, DIM, K, PROBES, NEW = 60_000, 96, 10, 500, 2_000
EF_VALUES = (16, 32, 64)
Rows = list[tuple[str, str]]


def _data() -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    data = clustered(N, DIM, seed=7, latent=96, spread=1.0)
    new = clustered(NEW, DIM, seed=7, sample_seed=2007, latent=96, spread=1.0)
    return data, new


def _build(d: Path, data: npt.NDArray[np.float32]) -> Path:
    np.save(d / "recall.npy", data)
    subprocess.run(
        [
            str(KNN_BUILD),
            *("--source", str(d / "recall.npy"), "--metric", "cosine"),
            *("--m", "16", "--ef-construction", "200", "--probe-queries", str(PROBES)),
            *("--k", str(K), "--min-recall", "0", "--version", "recall"),
            *("--out", str(d / "recall-out"), "--log-level", "WARNING"),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return d / "recall-out" / "recall"


def _leave_one_out(data: npt.NDArray[np.float32], rows: npt.NDArray[np.int64]) -> dict[int, float]:
    index = hnswlib.Index(space="cosine", dim=DIM)
    index.init_index(max_elements=N, ef_construction=200, M=16, random_seed=42)
    index.add_items(data, np.arange(N), num_threads=available_cpus())
    truth = exact_topk(data, data[rows], K, "cosine", exclude=rows)
    out = {}
    for ef in EF_VALUES:
        index.set_ef(ef)
        labels, _ = index.knn_query(data[rows], k=K + 1, num_threads=available_cpus())
        out[ef] = recall_at_k(drop_self(labels.astype(np.int64), rows, K), truth)
    return out


def _served(
    artifact: Path, logs: Path, ef: int, new: npt.NDArray[np.float32]
) -> tuple[npt.NDArray[np.int64], float]:
    args = ["--ef-search", str(ef), "--log-level", "warning"]
    with serve(artifact, logs, args=args, timeout=120) as server:
        rows: list[list[int]] = []
        for i in range(0, len(new), 500):
            r = httpx.post(
                server.url + "/v1/query",
                json={"vectors": new[i : i + 500].tolist(), "k": K},
                timeout=120,
            )
            r.raise_for_status()
            rows += [res["ids"] for res in r.json()["results"]]
        gauge = next(
            float(line.rsplit(" ", 1)[1])
            for line in server.metrics_text().splitlines()
            if line.startswith("knn_recall_ratio{")
        )
    return np.asarray(rows, dtype=np.int64), gauge


def recall_rows(d: Path) -> Rows:
    data, new = _data()
    artifact = _build(d, data)
    manifest = Manifest.model_validate_json((artifact / "manifest.json").read_bytes())
    probes = Probes.load(artifact / "probes.npz")
    truth = exact_topk(data, new, K, "cosine")
    before = _leave_one_out(data, probes.self_labels)
    rows: Rows = []
    for ef in EF_VALUES:
        answers, gauge = _served(artifact, d / f"logs-recall-{ef}", ef, new)
        actual = recall_at_k(answers, truth)
        gate = recall_at(manifest.validation.curve, ef)
        rows.append(
            (
                f"recall@{K} at efSearch {ef} ({N:,} x {DIM} cosine, {PROBES} probes, {NEW:,} "
                "new queries): new queries / gate / gauge / leave-one-out (before)",
                f"{actual:.4f} / {gate:.4f} / {gauge:.4f} / {before[ef]:.4f}",
            )
        )
        print(rows[-1], flush=True)
    return rows
