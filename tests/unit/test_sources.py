"""Loading sources and ids (knn_serving.build.sources) and resolving URIs, on real files.

The files are written here with numpy and pyarrow directly, byte for byte,
so malformed ones (truncated, ragged, wrong headers) are exactly what the test says.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from knn_serving.build.sources import (
    SCAN_ROWS,
    check_finite,
    infer_format,
    load_ids,
    load_source,
    normalize_ids,
)
from knn_serving.errors import InputError
from knn_serving.uris import resolve

F32 = npt.NDArray[np.float32]


def vectors(n: int = 50, d: int = 6, seed: int = 0) -> F32:
    return np.random.default_rng(seed).standard_normal((n, d), dtype=np.float32)


def save_npy(path: Path, arr: npt.NDArray[np.generic]) -> Path:
    with path.open("wb") as f:
        np.save(f, arr, allow_pickle=False)
    return path


def xvecs_bytes(arr: npt.NDArray[np.generic], component: str) -> bytes:
    n, d = arr.shape
    records = np.empty(n, dtype=np.dtype([("d", "<i4"), ("v", component, (d,))]))
    records["d"] = d
    records["v"] = arr
    return records.tobytes()


def list_array(arr: npt.NDArray[np.generic], fixed: bool) -> pa.Array:
    n, d = arr.shape
    flat = pa.array(arr.reshape(-1))
    if fixed:
        return pa.FixedSizeListArray.from_arrays(flat, d)
    return pa.ListArray.from_arrays(pa.array(np.arange(0, (n + 1) * d, d, dtype=np.int32)), flat)


def message(excinfo: pytest.ExceptionInfo[InputError]) -> str:
    text = str(excinfo.value)
    assert "\n" not in text, "errors are one line"
    return text


# --- formats and URIs --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.npy", "npy"),
        ("A.NPY", "npy"),
        ("base.fvecs", "fvecs"),
        ("base.bvecs", "bvecs"),
        ("t.parquet", "parquet"),
        ("t.pq", "parquet"),
        ("http://127.0.0.1:9/x/y.fvecs", "fvecs"),
        ("s3://bucket/emb.npy", "npy"),
        ("pvc://claim/dir/t.parquet", "parquet"),
        ("file:///data/a.bvecs", "bvecs"),
    ],
)
def test_infer_format_from_the_name(name: str, fmt: str) -> None:
    assert infer_format(name, None) == fmt


def test_an_explicit_format_wins_and_must_be_known() -> None:
    assert infer_format("vectors.bin", "fvecs") == "fvecs"
    assert infer_format("a.npy", "parquet") == "parquet"
    with pytest.raises(InputError) as e:
        infer_format("a.npy", "csv")
    assert message(e) == "unknown format 'csv' (use one of: npy, fvecs, bvecs, parquet)"


def test_an_unknown_extension_asks_for_format() -> None:
    with pytest.raises(InputError) as e:
        infer_format("/data/vectors.bin", None)
    assert "/data/vectors.bin: cannot infer the format" in message(e)
    assert "--format" in message(e)


def test_resolve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve("/a/b.npy").local == Path("/a/b.npy")
    assert resolve("rel/b.npy").local == Path("rel/b.npy")
    assert resolve("file:///a/b%20c.npy").local == Path("/a/b c.npy")
    monkeypatch.setenv("KNN_PVC_ROOT", str(tmp_path))
    assert resolve("pvc://claim/dir/x.npy").local == tmp_path / "claim" / "dir" / "x.npy"
    for remote in ("http://h/x.npy", "https://h/x.npy", "s3://b/x.npy"):
        loc = resolve(remote)
        assert loc.local is None
        assert not loc.is_local
        assert loc.name == "x.npy"
    with pytest.raises(InputError, match="need a claim name"):
        resolve("pvc:///x.npy")
    with pytest.raises(InputError, match="unsupported URI scheme 'ftp'"):
        resolve("ftp://h/x.npy")
    with pytest.raises(InputError, match="empty URI"):
        resolve("")


def test_pvc_uri_reads_under_knn_pvc_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x = vectors()
    (tmp_path / "claim" / "sub").mkdir(parents=True)
    save_npy(tmp_path / "claim" / "sub" / "x.npy", x)
    monkeypatch.setenv("KNN_PVC_ROOT", str(tmp_path))
    np.testing.assert_array_equal(load_source("pvc://claim/sub/x.npy", None).vectors, x)
    monkeypatch.setenv("KNN_PVC_ROOT", str(tmp_path / "elsewhere"))
    with pytest.raises(InputError, match="not found"):
        load_source("pvc://claim/sub/x.npy", None)


# --- npy ---------------------------------------------------------------------------------


def test_npy_float32_is_memory_mapped(tmp_path: Path) -> None:
    x = vectors()
    src = load_source(str(save_npy(tmp_path / "x.npy", x)), None)
    assert isinstance(src.vectors, np.memmap)
    assert src.vectors.dtype == np.float32
    assert (src.count, src.dimension, src.format) == (50, 6, "npy")
    assert src.ids is None
    np.testing.assert_array_equal(src.vectors, x)


def test_npy_float64_keeps_its_values(tmp_path: Path) -> None:
    x = vectors().astype(np.float64) / 3.0
    src = load_source(f"file://{save_npy(tmp_path / 'x.npy', x)}", None)
    assert src.vectors.dtype == np.float64
    np.testing.assert_array_equal(src.vectors, x)


def test_npy_fortran_order_and_integers(tmp_path: Path) -> None:
    x = vectors()
    src = load_source(str(save_npy(tmp_path / "f.npy", np.asfortranarray(x))), None)
    np.testing.assert_array_equal(np.asarray(src.vectors), x)
    ints = np.arange(24, dtype=np.int16).reshape(4, 6)
    src = load_source(str(save_npy(tmp_path / "i.npy", ints)), None)
    assert src.vectors.dtype == np.float32
    np.testing.assert_array_equal(src.vectors, ints.astype(np.float32))


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.zeros(5, dtype=np.float32), "expected a 2-D array of vectors, got shape (5,)"),
        (np.zeros((2, 3, 4), dtype=np.float32), "got shape (2, 3, 4)"),
        (np.zeros((3, 2), dtype=bool), "vectors have dtype bool"),
        (np.zeros((0, 4), dtype=np.float32), "no vectors"),
        (np.zeros((4, 0), dtype=np.float32), "vectors have dimension 0"),
    ],
)
def test_npy_shape_and_dtype_errors(
    tmp_path: Path, array: npt.NDArray[np.generic], expected: str
) -> None:
    path = save_npy(tmp_path / "bad.npy", array)
    with pytest.raises(InputError) as e:
        load_source(str(path), None)
    assert message(e).startswith(f"{path}: ")
    assert expected in message(e)


def test_npy_object_array_is_refused_without_unpickling(tmp_path: Path) -> None:
    path = tmp_path / "obj.npy"
    with path.open("wb") as f:
        np.save(f, np.array([[1.0, "x"]], dtype=object), allow_pickle=True)
    with pytest.raises(InputError) as e:
        load_source(str(path), None)
    assert "not a valid .npy file" in message(e)


def test_npy_truncated_empty_and_garbage(tmp_path: Path) -> None:
    good = save_npy(tmp_path / "good.npy", vectors()).read_bytes()
    (tmp_path / "trunc.npy").write_bytes(good[:-40])
    (tmp_path / "header.npy").write_bytes(good[:30])
    (tmp_path / "empty.npy").write_bytes(b"")
    (tmp_path / "text.npy").write_bytes(b"hello, world\n" * 10)
    cases = {
        "trunc.npy": "not a valid .npy file or truncated",
        "header.npy": "not a valid .npy file",
        "empty.npy": "empty file",
        "text.npy": "not a valid .npy file",
    }
    for name, expected in cases.items():
        with pytest.raises(InputError) as e:
            load_source(str(tmp_path / name), None)
        assert expected in message(e), name


def test_missing_directory_and_overlong_names(tmp_path: Path) -> None:
    with pytest.raises(InputError) as e:
        load_source(str(tmp_path / "nope.npy"), None)
    assert message(e) == f"{tmp_path / 'nope.npy'}: not found"
    (tmp_path / "dir.npy").mkdir()
    with pytest.raises(InputError) as e:
        load_source(str(tmp_path / "dir.npy"), None)
    assert message(e) == f"{tmp_path / 'dir.npy'}: not a regular file"
    # A name longer than the file system allows is bad input, not a storage fault.
    long = tmp_path / ("x" * 300 + ".npy")
    with pytest.raises(InputError) as e:
        load_source(str(long), None)
    assert "cannot read: File name too long" in message(e)


# --- fvecs / bvecs -------------------------------------------------------------------------


def test_fvecs_values_and_memory_map(tmp_path: Path) -> None:
    x = vectors(40, 5)
    path = tmp_path / "x.fvecs"
    path.write_bytes(xvecs_bytes(x, "<f4"))
    src = load_source(str(path), None)
    assert isinstance(src.vectors, np.memmap)
    assert (src.count, src.dimension, src.format) == (40, 5, "fvecs")
    np.testing.assert_array_equal(src.vectors, x)


def test_bvecs_stay_uint8(tmp_path: Path) -> None:
    x = np.random.default_rng(1).integers(0, 256, size=(30, 7), dtype=np.uint8)
    path = tmp_path / "x.bvecs"
    path.write_bytes(xvecs_bytes(x, "u1"))
    src = load_source(str(path), None)
    assert src.vectors.dtype == np.uint8
    np.testing.assert_array_equal(src.vectors, x)
    # Read as fvecs, the second 32-byte record's "header" is vector bytes.
    with pytest.raises(InputError, match=r"record 1 has dimension .*, but the first record has 7"):
        load_source(str(path), "fvecs")


def test_fvecs_errors(tmp_path: Path) -> None:
    x = vectors(20, 4)
    good = xvecs_bytes(x, "<f4")
    record = 4 + 4 * 4
    other = xvecs_bytes(np.ones((1, 2), dtype=np.float32), "<f4")
    header = bytearray(good)
    header[7 * record : 7 * record + 4] = np.array([5], dtype="<i4").tobytes()
    cases: dict[str, tuple[bytes, str]] = {
        "trunc.fvecs": (
            good[:-3],
            "truncated fvecs file (397 bytes is not a whole number of 20-byte records "
            "for dimension 4)",
        ),
        # A genuine record of another dimension, not just a ragged tail.
        "mixed.fvecs": (
            good[: 5 * record] + other + good[5 * record :],
            "record 5 has dimension 2",
        ),
        "header.fvecs": (bytes(header), "record 7 has dimension 5, but the first record has 4"),
        "zero-dim.fvecs": (np.array([0, 0], dtype="<i4").tobytes(), "invalid dimension 0"),
        "negative.fvecs": (np.array([-3, 0], dtype="<i4").tobytes(), "invalid dimension -3"),
        "tiny.fvecs": (b"\x04\x00", "empty or truncated fvecs file"),
        "empty.fvecs": (b"", "empty file"),
    }
    for name, (content, expected) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(InputError) as e:
            load_source(str(tmp_path / name), None)
        assert expected in message(e), name
        assert message(e).startswith(str(tmp_path / name)), name


# --- parquet ---------------------------------------------------------------------------


@pytest.mark.parametrize("fixed", [False, True], ids=["list", "fixed_size_list"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_parquet_vectors(tmp_path: Path, fixed: bool, dtype: type[np.generic]) -> None:
    x = vectors(30, 4).astype(dtype)
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"embedding": list_array(x, fixed)}), path, row_group_size=7)
    src = load_source(str(path), None)
    assert src.format == "parquet"
    assert src.vectors.dtype == dtype
    np.testing.assert_array_equal(src.vectors, x)


def test_parquet_integer_vectors_become_float32(tmp_path: Path) -> None:
    x = np.arange(12, dtype=np.int32).reshape(3, 4)
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"v": list_array(x, True)}), path)
    src = load_source(str(path), None)
    assert src.vectors.dtype == np.float32
    np.testing.assert_array_equal(src.vectors, x)


def test_parquet_column_choice(tmp_path: Path) -> None:
    a, b = vectors(10, 3, seed=1), vectors(10, 5, seed=2)
    path = tmp_path / "t.parquet"
    table = pa.table(
        {"other": list_array(a, False), "vector": list_array(b, True), "n": list(range(10))}
    )
    pq.write_table(table, path)
    # "vector" is a preferred name; --column picks any other.
    np.testing.assert_array_equal(load_source(str(path), None).vectors, b)
    np.testing.assert_array_equal(load_source(str(path), None, column="other").vectors, a)
    with pytest.raises(InputError) as e:
        load_source(str(path), None, column="emb")
    assert message(e) == f"{path}: no column 'emb' (columns: other, vector, n)"
    with pytest.raises(InputError) as e:
        load_source(str(path), None, column="n")
    assert "column 'n' is int64, not a list of numbers" in message(e)

    two = tmp_path / "two.parquet"
    pq.write_table(pa.table({"a": list_array(a, False), "b": list_array(b, False)}), two)
    with pytest.raises(InputError) as e:
        load_source(str(two), None)
    assert "several list columns" in message(e) and "--column" in message(e)
    none = tmp_path / "none.parquet"
    pq.write_table(pa.table({"n": [1, 2]}), none)
    with pytest.raises(InputError) as e:
        load_source(str(none), None)
    assert "no list columns" in message(e)


def test_parquet_malformed_vectors(tmp_path: Path) -> None:
    cases: dict[str, tuple[pa.Array, str]] = {
        "ragged": (pa.array([[1.0, 2.0], [3.0], [4.0, 5.0]]), "row 1 of 'v' has 1 values"),
        "null-row": (pa.array([[1.0, 2.0], None]), "column 'v' has 1 null vectors"),
        "null-value": (pa.array([[1.0, None], [1.0, 2.0]]), "column 'v' has null components"),
        "strings": (pa.array([["a", "b"]]), "holds string, not numbers"),
    }
    for name, (arr, expected) in cases.items():
        path = tmp_path / f"{name}.parquet"
        pq.write_table(pa.table({"v": arr}), path)
        with pytest.raises(InputError) as e:
            load_source(str(path), None)
        assert expected in message(e), name
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(InputError) as e:
        load_source(str(garbage), None)
    assert "not a valid parquet file" in message(e)


@pytest.mark.parametrize("ids", [[10, -5, 7, 99], ["a", "b", "ü", "d"]], ids=["int", "str"])
def test_parquet_id_column(tmp_path: Path, ids: list[int] | list[str]) -> None:
    x = vectors(4, 3)
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"emb": list_array(x, True), "key": ids}), path)
    src = load_source(str(path), None, column="emb", id_column="key")
    assert src.ids is not None
    assert src.ids.tolist() == ids
    assert src.ids.dtype.kind == ("i" if isinstance(ids[0], int) else "U")
    with pytest.raises(InputError, match="no id column 'id'"):
        load_source(str(path), None, id_column="id")
    other = save_npy(tmp_path / "ids.npy", np.arange(4))
    with pytest.raises(InputError, match="either with --ids or with --id-column"):
        load_source(str(path), None, id_column="key", ids_uri=str(other))


def test_parquet_id_column_with_nulls(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(
        pa.table({"emb": list_array(vectors(3, 2), True), "key": ["a", None, "c"]}), path
    )
    with pytest.raises(InputError) as e:
        load_source(str(path), None, id_column="key")
    assert "id column 'key' has 1 nulls" in message(e)


# --- ids -----------------------------------------------------------------------------------


def test_ids_files(tmp_path: Path) -> None:
    x = save_npy(tmp_path / "x.npy", vectors(4, 2))
    save_npy(tmp_path / "int.npy", np.array([5, 3, -1, 8], dtype=np.int32))
    save_npy(tmp_path / "str.npy", np.array(["q", "r", "s", "t"]))
    (tmp_path / "ids.json").write_text(json.dumps(["a", "b", "c", "é"]), encoding="utf-8")
    (tmp_path / "ints.txt").write_text("4\n-2\n\n9\n100\n")
    (tmp_path / "strs.txt").write_text("x1\nx2\n3\nx4\n")
    # Not integers, though str.isdigit() says yes to "²" and "--5" strips to digits.
    (tmp_path / "lookalike.txt").write_text("1\n\u00b2\n--5\n4\n", encoding="utf-8")
    expected: dict[str, list[int] | list[str]] = {
        "int.npy": [5, 3, -1, 8],
        "str.npy": ["q", "r", "s", "t"],
        "ids.json": ["a", "b", "c", "é"],
        "ints.txt": [4, -2, 9, 100],
        "strs.txt": ["x1", "x2", "3", "x4"],
        "lookalike.txt": ["1", "\u00b2", "--5", "4"],
    }
    for name, want in expected.items():
        src = load_source(str(x), None, ids_uri=str(tmp_path / name))
        assert src.ids is not None
        assert src.ids.tolist() == want, name
        assert src.ids.dtype == np.int64 if isinstance(want[0], int) else src.ids.dtype.kind == "U"


def test_bad_ids_files(tmp_path: Path) -> None:
    (tmp_path / "obj.json").write_text('{"a": 1}')
    (tmp_path / "bad.json").write_text("[1, 2,")
    (tmp_path / "bool.json").write_text("[true, false]")
    (tmp_path / "float.json").write_text("[1.5, 2.5]")
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9\n")
    (tmp_path / "huge.txt").write_text("1\n9223372036854775808\n")
    (tmp_path / "huge.json").write_text("[-9223372036854775809, 2]")
    cases = {
        "obj.json": "expected a JSON list of ids",
        "bad.json": "invalid JSON",
        "bool.json": "ids must be integers or strings",
        "float.json": "ids must be integers or strings",
        "latin1.txt": "ids file is not UTF-8 text",
        "huge.txt": "id 9223372036854775808 does not fit in a 64-bit integer",
        "huge.json": "id -9223372036854775809 does not fit in a 64-bit integer",
        "missing.txt": "not found",
    }
    for name, expected in cases.items():
        with pytest.raises(InputError) as e:
            load_ids(str(tmp_path / name))
        assert expected in message(e), name


def test_normalize_ids() -> None:
    np.testing.assert_array_equal(normalize_ids(np.array([3, 1, 2], np.int32), 3, "u"), [3, 1, 2])
    with pytest.raises(InputError) as e:
        normalize_ids(np.arange(4), 5, "ids.npy")
    assert message(e) == "ids.npy: 4 ids for 5 vectors"
    with pytest.raises(InputError) as e:
        normalize_ids(np.array([1, 2, 3, 2]), 4, "ids.npy")
    assert message(e) == "ids.npy: duplicate id 2"
    with pytest.raises(InputError) as e:
        normalize_ids(np.array(["a", "b", "a"]), 3, "ids.txt")
    assert message(e) == "ids.txt: duplicate id 'a'"
    with pytest.raises(InputError, match="one-dimensional"):
        normalize_ids(np.zeros((2, 2), np.int64), 2, "u")
    with pytest.raises(InputError, match="dtype float64"):
        normalize_ids(np.array([1.0, 2.0]), 2, "u")


# --- finite and nonzero checks -------------------------------------------------------------


def test_check_finite_names_the_first_bad_row() -> None:
    x = np.ones((SCAN_ROWS + 100, 2), dtype=np.float32)
    check_finite(x, "u")
    check_finite(x, "u", need_nonzero=True)
    x[SCAN_ROWS + 7, 1] = np.nan
    x[SCAN_ROWS + 9, 0] = np.inf
    with pytest.raises(InputError) as e:
        check_finite(x, "src.npy")
    assert message(e) == f"src.npy: row {SCAN_ROWS + 7} contains NaN or Inf"
    y = np.ones((10, 3), dtype=np.float64)
    y[4, 2] = -np.inf
    with pytest.raises(InputError, match="row 4 contains NaN or Inf"):
        check_finite(y, "u")


def test_zero_vectors_only_matter_for_cosine() -> None:
    x = np.ones((10, 3), dtype=np.float32)
    x[6] = 0.0
    check_finite(x, "u")
    with pytest.raises(InputError) as e:
        check_finite(x, "u", need_nonzero=True)
    assert message(e) == "u: row 6 is a zero vector, which has no cosine direction"
    b = np.ones((5, 3), dtype=np.uint8)
    b[2] = 0
    check_finite(b, "u")
    with pytest.raises(InputError, match="row 2 is a zero vector"):
        check_finite(b, "u", need_nonzero=True)
