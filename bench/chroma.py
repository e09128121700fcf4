"""Chroma's server as the peer of DESIGN section 6, on the same machine and data.

Chroma (also built on hnswlib) is installed from PyPI at the pin in
peers/chroma-constraints.txt into a virtualenv of its own under the tools cache,
so its ~80 dependencies never meet the project's. Only its `chroma run` server
is used; the bench talks to it over its HTTP API like any client would.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt
from knn_devtools.knnserve import LOOPBACK, http_status
from knn_devtools.procs import ManagedProcess, log_files, start_on_free_port
from knn_devtools.tools import cache_dir

CONSTRAINTS = Path(__file__).parent / "peers" / "chroma-constraints.txt"
API = "/api/v2/tenants/default_tenant/databases/default_database"


def pinned_version(constraints: Path = CONSTRAINTS) -> str:
    m = re.search(r"^chromadb==(\S+)$", constraints.read_text(), re.M)
    if not m:
        raise RuntimeError(f"{constraints} does not pin chromadb")
    return m.group(1)


def ensure_installed() -> Path:
    """The `chroma` command of the pinned release, installing it on first use."""
    version = pinned_version()
    venv = cache_dir() / "peers" / f"chroma-{version}"
    # Written last: an interrupted install is redone, never half used.
    stamp = venv / ".installed"
    if stamp.is_file():
        return venv / "bin" / "chroma"
    print(f"installing chromadb {version} into {venv} (first run only)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(venv / "bin" / "pip"), "install", "-q", "-c", str(CONSTRAINTS)]
    subprocess.run([*pip, f"chromadb=={version}"], check=True)
    stamp.write_text(version + "\n")
    return venv / "bin" / "chroma"


@dataclass(frozen=True)
class Chroma:
    url: str
    process: ManagedProcess

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=600, trust_env=False)

    def create(self, name: str, *, space: str, m: int, ef_construction: int, ef: int) -> str:
        """A collection with the same HNSW parameters as our index; its id."""
        with self.client() as c:
            r = c.post(
                f"{API}/collections",
                json={
                    "name": name,
                    "configuration": {
                        "hnsw": {
                            "space": space,
                            "max_neighbors": m,
                            "ef_construction": ef_construction,
                            "ef_search": ef,
                        },
                        "embedding_function": {"type": "legacy"},
                    },
                },
            )
            r.raise_for_status()
            return str(r.json()["id"])

    def add(self, collection: str, vectors: npt.NDArray[np.float32]) -> None:
        """Insert with ids "0".."n-1" in the largest batches the server takes."""
        with self.client() as c:
            limit = int(c.get("/api/v2/pre-flight-checks").json()["max_batch_size"])
            for i in range(0, len(vectors), limit):
                chunk = vectors[i : i + limit]
                r = c.post(
                    f"{API}/collections/{collection}/add",
                    json={
                        "ids": [str(j) for j in range(i, i + len(chunk))],
                        "embeddings": chunk.tolist(),
                    },
                )
                r.raise_for_status()

    def query_path(self, collection: str) -> str:
        return f"{API}/collections/{collection}/query"

    @staticmethod
    def query_body(vector: npt.NDArray[np.float32], k: int) -> dict[str, object]:
        return {"query_embeddings": [vector.tolist()], "n_results": k, "include": ["distances"]}

    def labels(
        self, collection: str, queries: npt.NDArray[np.float32], k: int
    ) -> npt.NDArray[np.int64]:
        with self.client() as c:
            rows = []
            for q in queries:
                r = c.post(self.query_path(collection), json=self.query_body(q, k))
                r.raise_for_status()
                rows.append([int(x) for x in r.json()["ids"][0]])
        return np.array(rows, dtype=np.int64)


@contextmanager
def running(data_dir: Path, log_dir: Path, timeout: float = 60.0) -> Iterator[Chroma]:
    chroma = ensure_installed()
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
    url = ""

    def spawn(port: int) -> ManagedProcess:
        nonlocal url
        url = f"http://{LOOPBACK}:{port}"
        out, err = log_files(log_dir, "chroma")
        argv = [str(chroma), "run", "--path", str(data_dir), "--host", LOOPBACK]
        return ManagedProcess("chroma", [*argv, "--port", str(port)], out, stderr_path=err, env=env)

    def ready(child: ManagedProcess) -> None:
        child.wait_until("heartbeat", lambda: http_status(url, "/api/v2/heartbeat") == 200, timeout)

    child = start_on_free_port(spawn, ready)
    try:
        yield Chroma(url, child)
    finally:
        child.stop()
