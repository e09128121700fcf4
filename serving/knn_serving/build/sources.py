"""Load source vectors and ids from every supported format and location.

Local `.npy`, fvecs and bvecs files are memory-mapped, so a source larger than
memory streams into hnswlib chunk by chunk. Every check that fails raises
InputError with one line naming the file and the problem.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast, get_args

import numpy as np
import numpy.typing as npt

from ..errors import InputError
from ..uris import Location, resolve

Format = Literal["npy", "fvecs", "bvecs", "parquet"]
FORMATS: tuple[str, ...] = get_args(Format)
_EXTENSIONS: dict[str, Format] = {
    ".npy": "npy",
    ".fvecs": "fvecs",
    ".bvecs": "bvecs",
    ".parquet": "parquet",
    ".pq": "parquet",
}
# Rows checked per step when scanning a memory-mapped source.
SCAN_ROWS = 65536

Vectors = npt.NDArray[np.floating] | npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Source:
    uri: str
    format: Format
    vectors: Vectors  # (n, d); may be a read-only memory map
    ids: npt.NDArray[np.int64] | npt.NDArray[np.str_] | None = None

    @property
    def count(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dimension(self) -> int:
        return int(self.vectors.shape[1])


def infer_format(uri: str, given: str | None) -> Format:
    if given is not None:
        if given not in FORMATS:
            raise InputError(f"unknown format '{given}' (use one of: {', '.join(FORMATS)})")
        return cast(Format, given)
    name = resolve(uri).name.lower()
    for ext, fmt in _EXTENSIONS.items():
        if name.endswith(ext):
            return fmt
    raise InputError(
        f"{uri}: cannot infer the format from the name; pass --format ({', '.join(FORMATS)})"
    )


def _open_bytes(loc: Location) -> bytes:
    import fsspec

    try:
        with fsspec.open(loc.uri, "rb") as f:
            return cast(bytes, f.read())
    except FileNotFoundError:
        raise InputError(f"{loc.uri}: not found") from None
    except Exception as e:  # fsspec backends raise their own types
        raise InputError(f"{loc.uri}: cannot read: {e}") from None


def _check_local(loc: Location) -> Path:
    assert loc.local is not None
    path = loc.local
    try:
        exists = path.exists()
    except OSError as e:  # e.g. a name too long, or a parent directory without search permission
        raise InputError(f"{loc.uri}: cannot read: {e.strerror}") from None
    if not exists:
        raise InputError(f"{loc.uri}: not found")
    if not path.is_file():
        raise InputError(f"{loc.uri}: not a regular file")
    try:
        with path.open("rb"):
            pass
    except OSError as e:
        raise InputError(f"{loc.uri}: cannot read: {e.strerror}") from None
    if path.stat().st_size == 0:
        raise InputError(f"{loc.uri}: empty file")
    return path


def _load_npy(loc: Location) -> npt.NDArray[np.generic]:
    try:
        if loc.local is not None:
            arr = np.load(_check_local(loc), mmap_mode="r", allow_pickle=False)
        else:
            arr = np.load(io.BytesIO(_open_bytes(loc)), allow_pickle=False)
    except InputError:
        raise
    except ValueError as e:
        raise InputError(f"{loc.uri}: not a valid .npy file or truncated ({e})") from None
    except (OSError, EOFError) as e:
        raise InputError(f"{loc.uri}: not a valid .npy file ({e})") from None
    return cast(npt.NDArray[np.generic], arr)


def _load_xvecs(loc: Location, component: Literal["f", "b"]) -> Vectors:
    item = 4 if component == "f" else 1
    if loc.local is not None:
        raw: npt.NDArray[np.uint8] = np.memmap(_check_local(loc), dtype=np.uint8, mode="r")
    else:
        raw = np.frombuffer(_open_bytes(loc), dtype=np.uint8)
    if raw.size < 4:
        raise InputError(f"{loc.uri}: empty or truncated {component}vecs file")
    dim = int(raw[:4].view("<i4")[0])
    if dim <= 0 or dim > 65536:
        raise InputError(f"{loc.uri}: invalid dimension {dim} in the first record header")
    record = 4 + dim * item
    n = raw.size // record
    dtype = np.dtype([("d", "<i4"), ("v", "<f4" if component == "f" else "u1", (dim,))])
    recs = raw[: n * record].view(dtype).reshape(n)
    # Headers first: a record of another dimension also leaves a ragged tail,
    # and "record 7 has dimension 4" says more than "truncated".
    for start in range(0, n, SCAN_ROWS):
        dims = recs["d"][start : start + SCAN_ROWS]
        bad = np.flatnonzero(dims != dim)
        if bad.size:
            row = start + int(bad[0])
            raise InputError(
                f"{loc.uri}: record {row} has dimension {int(dims[bad[0]])}, "
                f"but the first record has {dim}"
            )
    if raw.size % record != 0:
        raise InputError(
            f"{loc.uri}: truncated {component}vecs file ({raw.size} bytes is not a whole number "
            f"of {record}-byte records for dimension {dim})"
        )
    return cast(Vectors, recs["v"])


def _pick_column(names: list[str], types: list[object], given: str | None, uri: str) -> str:
    import pyarrow as pa

    if given is not None:
        if given not in names:
            raise InputError(f"{uri}: no column '{given}' (columns: {', '.join(names)})")
        return given
    lists = [
        n
        for n, t in zip(names, types, strict=True)
        if pa.types.is_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_large_list(t)
    ]
    for preferred in ("embedding", "vector", "embeddings", "vectors"):
        if preferred in lists:
            return preferred
    if len(lists) == 1:
        return lists[0]
    raise InputError(
        f"{uri}: {'no' if not lists else 'several'} list columns to read vectors from; "
        "pass --column"
    )


def _load_parquet(
    loc: Location, column: str | None, id_column: str | None
) -> tuple[Vectors, npt.NDArray[np.generic] | None]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        src: object = _check_local(loc) if loc.local is not None else io.BytesIO(_open_bytes(loc))
        pf = pq.ParquetFile(src)
        schema = pf.schema_arrow
        col = _pick_column(schema.names, list(schema.types), column, loc.uri)
        wanted = [col] + ([id_column] if id_column else [])
        if id_column and id_column not in schema.names:
            raise InputError(f"{loc.uri}: no id column '{id_column}'")
        table = pf.read(columns=wanted)
    except InputError:
        raise
    except (pa.ArrowException, OSError) as e:
        raise InputError(f"{loc.uri}: not a valid parquet file ({e})") from None
    arr = table.column(col).combine_chunks()
    if arr.null_count:
        raise InputError(f"{loc.uri}: column '{col}' has {arr.null_count} null vectors")
    typ = arr.type
    if pa.types.is_fixed_size_list(typ):
        dim = typ.list_size
    elif pa.types.is_list(typ) or pa.types.is_large_list(typ):
        lengths = np.diff(np.asarray(arr.offsets))
        if lengths.size == 0:
            raise InputError(f"{loc.uri}: column '{col}' has no rows")
        dim = int(lengths[0])
        bad = np.flatnonzero(lengths != dim)
        if bad.size:
            raise InputError(
                f"{loc.uri}: row {int(bad[0])} of '{col}' has {int(lengths[bad[0]])} values, "
                f"but row 0 has {dim}"
            )
    else:
        raise InputError(f"{loc.uri}: column '{col}' is {typ}, not a list of numbers")
    values = arr.flatten()
    if values.null_count:
        raise InputError(f"{loc.uri}: column '{col}' has null components")
    if not (pa.types.is_floating(values.type) or pa.types.is_integer(values.type)):
        raise InputError(f"{loc.uri}: column '{col}' holds {values.type}, not numbers")
    flat = values.to_numpy(zero_copy_only=False)
    vectors = cast(Vectors, flat.reshape(len(arr), dim) if dim else flat.reshape(len(arr), 0))
    ids = None
    if id_column:
        id_values = table.column(id_column)
        if id_values.null_count:
            raise InputError(f"{loc.uri}: id column '{id_column}' has {id_values.null_count} nulls")
        ids = id_values.to_numpy(zero_copy_only=False)
    return vectors, ids


def _as_matrix(arr: npt.NDArray[np.generic], uri: str) -> Vectors:
    if arr.ndim != 2:
        raise InputError(f"{uri}: expected a 2-D array of vectors, got shape {arr.shape}")
    if arr.dtype == np.uint8 or np.issubdtype(arr.dtype, np.floating):
        return cast(Vectors, arr)
    if np.issubdtype(arr.dtype, np.integer):
        return cast(Vectors, arr.astype(np.float32))
    raise InputError(f"{uri}: vectors have dtype {arr.dtype}; expected floats or integers")


_INT_LINE = re.compile(r"-?[0-9]+")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def load_ids(uri: str) -> npt.NDArray[np.generic]:
    """Ids from .npy (int or str), .json (list) or a text file (one per line)."""
    loc = resolve(uri)
    name = loc.name.lower()
    if name.endswith(".npy"):
        arr = _load_npy(loc)
    else:
        raw = _check_local(loc).read_bytes() if loc.local is not None else _open_bytes(loc)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{uri}: ids file is not UTF-8 text") from None
        if name.endswith(".json"):
            try:
                items = json.loads(text)
            except json.JSONDecodeError as e:
                raise InputError(f"{uri}: invalid JSON ({e.msg} at line {e.lineno})") from None
            if not isinstance(items, list):
                raise InputError(f"{uri}: expected a JSON list of ids")
        else:
            items = [line for line in text.splitlines() if line.strip()]
            # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
            if items and all(_INT_LINE.fullmatch(s.strip()) for s in items):
                items = [int(s) for s in items]
        if any(isinstance(x, bool) or not isinstance(x, int | str) for x in items):
            raise InputError(f"{uri}: ids must be integers or strings")
        huge = next(
            (x for x in items if isinstance(x, int) and not _INT64_MIN <= x <= _INT64_MAX), None
        )
        if huge is not None:
            raise InputError(f"{uri}: id {huge} does not fit in a 64-bit integer")
        arr = np.asarray(items)
    return arr


def normalize_ids(
    ids: npt.NDArray[np.generic], count: int, uri: str
) -> npt.NDArray[np.int64] | npt.NDArray[np.str_]:
    if ids.ndim != 1:
        raise InputError(f"{uri}: ids must be one-dimensional, got shape {ids.shape}")
    if ids.shape[0] != count:
        raise InputError(f"{uri}: {ids.shape[0]} ids for {count} vectors")
    out: npt.NDArray[np.int64] | npt.NDArray[np.str_]
    if np.issubdtype(ids.dtype, np.integer):
        out = ids.astype(np.int64)
    elif ids.dtype.kind in ("U", "S", "O"):
        try:
            out = ids.astype(np.str_)
        except (TypeError, ValueError):
            raise InputError(f"{uri}: ids must be integers or strings") from None
    else:
        raise InputError(f"{uri}: ids have dtype {ids.dtype}; expected integers or strings")
    uniq, counts = np.unique(out, return_counts=True)
    if uniq.size != count:
        dup = uniq[np.argmax(counts > 1)].item()
        raise InputError(f"{uri}: duplicate id {dup!r}")
    return out


def load_source(
    uri: str,
    fmt: str | None,
    *,
    ids_uri: str | None = None,
    column: str | None = None,
    id_column: str | None = None,
) -> Source:
    form = infer_format(uri, fmt)
    loc = resolve(uri)
    ids: npt.NDArray[np.generic] | None = None
    if form == "npy":
        vectors = _as_matrix(_load_npy(loc), uri)
    elif form == "fvecs":
        vectors = _load_xvecs(loc, "f")
    elif form == "bvecs":
        vectors = _load_xvecs(loc, "b")
    else:
        vectors, ids = _load_parquet(loc, column, id_column)
        vectors = _as_matrix(vectors, uri)
    if vectors.shape[0] == 0:
        raise InputError(f"{uri}: no vectors")
    if vectors.shape[1] == 0:
        raise InputError(f"{uri}: vectors have dimension 0")
    if ids_uri is not None:
        if ids is not None:
            raise InputError("give ids either with --ids or with --id-column, not both")
        ids = load_ids(ids_uri)
    norm_ids = normalize_ids(ids, vectors.shape[0], ids_uri or uri) if ids is not None else None
    return Source(uri=uri, format=form, vectors=vectors, ids=norm_ids)


def check_finite(vectors: Vectors, uri: str, *, need_nonzero: bool = False) -> None:
    """Scan in bounded steps; name the first row holding NaN/Inf (or a zero vector for cosine)."""
    if vectors.dtype == np.uint8 and not need_nonzero:
        return
    n = vectors.shape[0]
    for start in range(0, n, SCAN_ROWS):
        block = np.asarray(vectors[start : start + SCAN_ROWS])
        if block.dtype != np.uint8:
            ok = np.isfinite(block).all(axis=1)
            if not ok.all():
                row = start + int(np.argmin(ok))
                raise InputError(f"{uri}: row {row} contains NaN or Inf")
        if need_nonzero:
            zero = ~np.any(block != 0, axis=1)
            if zero.any():
                row = start + int(np.argmax(zero))
                raise InputError(
                    f"{uri}: row {row} is a zero vector, which has no cosine direction"
                )
