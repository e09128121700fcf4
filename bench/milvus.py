"""Milvus Lite as the second peer of DESIGN section 6, on the same machine and data.

Milvus Lite (PyPI `milvus-lite`, driven by `pymilvus`) is an embedded engine: it
runs inside the client's process and has no server to send HTTP to. So it is
measured as it is used: a process of its own (its own virtualenv under the tools
cache, at the pins in peers/milvus-constraints.txt) builds an HNSW collection with
the same M, efConstruction and ef, then answers single-vector searches from
`--connections` threads for each measured run, reporting searches per second and
its own CPU-seconds per search (the number that compares across the two designs).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from knn_devtools.tools import cache_dir

CONSTRAINTS = Path(__file__).parent / "peers" / "milvus-constraints.txt"

# Runs in Milvus' virtualenv: argv data.npy queries.npy metric m efc ef k threads seconds.
# Prints the insert time; one JSON line per line read from stdin (a measured run);
# at the end of its input, the labels of the first 500 queries.
WORKER = r"""
import json, os, sys, threading, time
import numpy as np
from pymilvus import DataType, MilvusClient

data_p, q_p, metric, m, efc, ef, k, threads, seconds = sys.argv[1:]
m, efc, ef, k, threads, seconds = map(int, (m, efc, ef, k, threads, seconds))
data, queries = np.load(data_p), np.load(q_p)
client = MilvusClient(os.path.join(os.path.dirname(data_p), "milvus.db"))
schema = client.create_schema(auto_id=False)
schema.add_field("id", DataType.INT64, is_primary=True)
schema.add_field("v", DataType.FLOAT_VECTOR, dim=data.shape[1])
index = client.prepare_index_params()
kind = {"l2": "L2", "cosine": "COSINE", "ip": "IP"}[metric]
index.add_index(field_name="v", index_type="HNSW", metric_type=kind,
                params={"M": m, "efConstruction": efc})
client.create_collection("bench", schema=schema, index_params=index)
t = time.perf_counter()
for i in range(0, len(data), 5000):
    rows = range(i, min(i + 5000, len(data)))
    client.insert("bench", [{"id": j, "v": data[j].tolist()} for j in rows])
client.flush("bench")
client.load_collection("bench")
print(json.dumps({"insert_seconds": time.perf_counter() - t}), flush=True)
params = {"params": {"ef": ef}}

def search(v):
    return client.search("bench", data=[v.tolist()], limit=k, search_params=params,
                         output_fields=[])[0]

labels = [[hit["id"] for hit in search(q)] for q in queries[:500]]
while sys.stdin.readline():  # the driver says when, so runs alternate with knn-serve's
    done = [0] * threads
    end = time.perf_counter() + seconds
    def work(t):
        i = t
        while time.perf_counter() < end:
            search(queries[i % len(queries)]); done[t] += 1; i += threads
    cpu = time.process_time(); start = time.perf_counter()
    ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    [t.start() for t in ts]; [t.join() for t in ts]
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(json.dumps({"qps": sum(done) / wall, "cpu_per_query": cpu / max(sum(done), 1)}),
          flush=True)
print(json.dumps({"labels": labels}), flush=True)
"""


def pinned_version(constraints: Path = CONSTRAINTS) -> str:
    m = re.search(r"^milvus-lite==(\S+)$", constraints.read_text(), re.M)
    if not m:
        raise RuntimeError(f"{constraints} does not pin milvus-lite")
    return m.group(1)


def ensure_installed() -> Path:
    """The Python of a virtualenv with the pinned milvus-lite and pymilvus."""
    version = pinned_version()
    venv = cache_dir() / "peers" / f"milvus-lite-{version}"
    stamp = venv / ".installed"  # written last: an interrupted install is redone
    if stamp.is_file():
        return venv / "bin" / "python"
    print(f"installing milvus-lite {version} into {venv} (first run only)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(venv / "bin" / "pip"), "install", "-q", "-c", str(CONSTRAINTS)]
    subprocess.run([*pip, "milvus-lite", "pymilvus", "numpy"], check=True)
    stamp.write_text(version + "\n")
    return venv / "bin" / "python"


class MilvusLite:
    """The worker process: build on start, then one measured run per `run()`."""

    def __init__(self, data: Path, queries: Path, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            [str(ensure_installed()), "-c", WORKER, str(data), str(queries), *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.insert_seconds = float(self._line()["insert_seconds"])  # type: ignore[arg-type]
        self.cpu_per_query: list[float] = []

    def _line(self) -> dict[str, object]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"milvus-lite worker exited {self.proc.wait()}")
        out: dict[str, object] = json.loads(line)
        return out

    def __call__(self) -> float:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        r = self._line()
        self.cpu_per_query.append(float(r["cpu_per_query"]))  # type: ignore[arg-type]
        return float(r["qps"])  # type: ignore[arg-type]

    def labels(self) -> list[list[int]]:
        """After the last run: the labels of the first 500 queries."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        out = self._line()["labels"]
        self.proc.wait(timeout=60)
        return out  # type: ignore[return-value]
