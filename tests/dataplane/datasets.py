"""Seeded datasets and writers for data-plane tests.

Every generator takes a seed and returns the same array for the same seed.
Every writer produces a real file in the format the builder reads, and
returns its path. Nothing here mocks the builder or the server: the files
are what a user would hand to `knn-build`.

    vectors = gaussian(2000, 16, seed=1)
    write_fvecs(tmp_path / "base.fvecs", vectors)
    with serve_directory(tmp_path) as base_url:   # real HTTP on loopback
        ...  # f"{base_url}/base.fvecs"
    truth = brute_force(vectors, queries, 10, "cosine")   # reference top-k, float64

Import it as the builder tests do (pytest puts this directory on sys.path, mypy
resolves from the repository root)::

    if TYPE_CHECKING:
        from tests.dataplane import datasets as ds
    else:
        import datasets as ds
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

Metric = Literal["l2", "ip", "cosine"]
F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]

__all__ = [
    "F32",
    "U8",
    "Metric",
    "blobs",
    "brute_force",
    "byte_vectors",
    "gaussian",
    "int_ids",
    "nearest",
    "serve_directory",
    "str_ids",
    "uniform",
    "write_bvecs",
    "write_fvecs",
    "write_ids",
    "write_npy",
    "write_parquet",
]


# --- generators ---------------------------------------------------------------------------


def gaussian(n: int, d: int, *, seed: int = 0) -> F32:
    """`n` float32 vectors of dimension `d` with standard normal components.

    Easy for HNSW: a default build reaches recall near 1.
    """
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d), dtype=np.float32)


def blobs(
    n: int, d: int, centers: int, *, spread: float = 10.0, seed: int = 0
) -> tuple[F32, npt.NDArray[np.int64], F32]:
    """`n` vectors around `centers` random centres (unit normal noise, centres drawn
    with standard deviation `spread`): (vectors, true cluster of each, centres).
    With the default spread the clusters are far apart: k is unambiguous."""
    rng = np.random.default_rng(seed)
    middle = rng.normal(0.0, spread, (centers, d)).astype(np.float32)
    truth = rng.integers(0, centers, n).astype(np.int64)
    vectors = (middle[truth] + rng.standard_normal((n, d), dtype=np.float32)).astype(np.float32)
    return vectors, truth, middle


def nearest(
    vectors: npt.NDArray[np.generic], centroids: npt.NDArray[np.generic]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Brute-force nearest centroid in float64 by full differences (not the expanded
    form knn_serving.centroids uses): labels and Euclidean distances."""
    x = np.asarray(vectors, dtype=np.float64)
    c = np.asarray(centroids, dtype=np.float64)
    dist = np.sqrt(((x[:, None, :] - c[None, :, :]) ** 2).sum(axis=2))
    labels: npt.NDArray[np.int64] = dist.argmin(axis=1).astype(np.int64)
    return labels, dist[np.arange(x.shape[0]), labels]


def uniform(n: int, d: int, *, seed: int = 0) -> F32:
    """Uniform in the unit cube: in high dimension, distances concentrate and
    HNSW with tiny parameters misses many true neighbours (a hard dataset)."""
    rng = np.random.default_rng(seed)
    return rng.random((n, d), dtype=np.float32)


def byte_vectors(n: int, d: int, *, seed: int = 0) -> U8:
    """uint8 vectors as in SIFT1B's bvecs; no row is all zeros."""
    rng = np.random.default_rng(seed)
    out: U8 = rng.integers(0, 256, size=(n, d), dtype=np.uint8)
    out[:, 0] = np.maximum(out[:, 0], 1)
    return out


def int_ids(n: int, *, seed: int = 0) -> npt.NDArray[np.int64]:
    """`n` distinct, unordered, partly negative int64 ids, unlike row numbers."""
    rng = np.random.default_rng(seed)
    ids: npt.NDArray[np.int64] = rng.choice(10 * n + 10, size=n, replace=False).astype(np.int64)
    return ids * 7 - 3 * n


def str_ids(n: int, *, prefix: str = "doc") -> list[str]:
    """`n` distinct string ids, including non-ASCII ones."""
    return [f"{prefix}-{i:06d}-{'é' if i % 3 == 0 else 'x'}" for i in range(n)]


# --- writers -----------------------------------------------------------------------------


def write_npy(path: Path, vectors: npt.NDArray[np.generic], *, fortran: bool = False) -> Path:
    """A plain `.npy` file (C order unless `fortran`), no pickles."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.asfortranarray(vectors) if fortran else np.ascontiguousarray(vectors)
    with path.open("wb") as f:
        np.save(f, arr, allow_pickle=False)
    return path


def _write_xvecs(path: Path, vectors: npt.NDArray[np.generic], component: str) -> Path:
    if vectors.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {vectors.shape}")
    n, d = vectors.shape
    dtype = np.dtype([("d", "<i4"), ("v", component, (d,))])
    records = np.empty(n, dtype=dtype)
    records["d"] = d
    records["v"] = vectors
    path.parent.mkdir(parents=True, exist_ok=True)
    records.tofile(path)
    return path


def write_fvecs(path: Path, vectors: npt.NDArray[np.generic]) -> Path:
    """TEXMEX `.fvecs`: per record a little-endian int32 dimension, then float32s."""
    return _write_xvecs(path, vectors, "<f4")


def write_bvecs(path: Path, vectors: U8) -> Path:
    """TEXMEX `.bvecs`: per record a little-endian int32 dimension, then uint8s."""
    return _write_xvecs(path, vectors, "u1")


def write_parquet(
    path: Path,
    vectors: npt.NDArray[np.generic],
    *,
    column: str = "embedding",
    fixed_size: bool = False,
    ids: Sequence[int] | Sequence[str] | npt.NDArray[np.generic] | None = None,
    id_column: str = "id",
    extra_columns: dict[str, Sequence[object]] | None = None,
    row_group_size: int | None = None,
) -> Path:
    """A parquet file whose `column` holds one vector per row.

    `fixed_size` picks `fixed_size_list<float>` instead of `list<float>`; the
    value type follows `vectors.dtype` (float32 or float64). `ids`, if given,
    go to `id_column`; `extra_columns` are written as they are (e.g. a second
    list column, to make the vector column ambiguous).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    n, d = vectors.shape
    flat = pa.array(np.ascontiguousarray(vectors).reshape(-1))
    if fixed_size:
        vec = pa.FixedSizeListArray.from_arrays(flat, d)
    else:
        offsets = pa.array(np.arange(0, (n + 1) * d, d, dtype=np.int32))
        vec = pa.ListArray.from_arrays(offsets, flat)
    columns: dict[str, object] = {column: vec}
    if ids is not None:
        columns[id_column] = pa.array(list(ids) if not isinstance(ids, np.ndarray) else ids)
    for name, values in (extra_columns or {}).items():
        columns[name] = pa.array(values)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return path


def write_ids(path: Path, ids: Sequence[int] | Sequence[str] | npt.NDArray[np.generic]) -> Path:
    """An ids file in the form its suffix names: `.npy` (int64 or unicode),
    `.json` (a list), anything else one id per line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    values = ids.tolist() if isinstance(ids, np.ndarray) else list(ids)
    if path.suffix == ".npy":
        arr = np.asarray(values)
        if arr.dtype.kind == "i":
            arr = arr.astype(np.int64)
        with path.open("wb") as f:
            np.save(f, arr, allow_pickle=False)
    elif path.suffix == ".json":
        path.write_text(json.dumps(values, ensure_ascii=False), encoding="utf-8")
    else:
        path.write_text("".join(f"{v}\n" for v in values), encoding="utf-8")
    return path


# --- serving files over real HTTP --------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve_directory(root: Path) -> Iterator[str]:
    """Serve `root` read-only over HTTP on 127.0.0.1 (a free port); yield the base URL.

    A real `http.server.ThreadingHTTPServer` in a daemon thread, shut down on exit.
    """
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="datasets-http", daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host!s}:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# --- reference answers -------------------------------------------------------------------


def brute_force(
    data: npt.NDArray[np.generic],
    queries: npt.NDArray[np.generic],
    k: int,
    metric: Metric,
    *,
    exclude: npt.NDArray[np.int64] | None = None,
) -> npt.NDArray[np.int64]:
    """Row numbers of the exact top-k, nearest first: a float64 full sort, written
    independently of `knn_serving.exact` so it can judge it. `exclude[i] >= 0` is
    a row query i must not return (its own row, in leave-one-out probes)."""
    x = np.asarray(data, dtype=np.float64)
    q = np.asarray(queries, dtype=np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    if metric == "l2":
        # Expanded form in float64: exact enough, and memory stays (queries, rows).
        dist = (q * q).sum(axis=1)[:, None] + (x * x).sum(axis=1)[None, :] - 2.0 * (q @ x.T)
    else:
        dist = -(q @ x.T)
    if exclude is not None:
        own = exclude >= 0
        dist[np.flatnonzero(own), exclude[own]] = np.inf
    order: npt.NDArray[np.int64] = np.argsort(dist, axis=1, kind="stable")[:, :k].astype(np.int64)
    return order
