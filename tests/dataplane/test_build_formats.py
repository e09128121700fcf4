"""`knn-build` reads every format from every location it supports (except s3://,
which needs a real S3), and what lands in the artifact is what was in the file.

Each case writes a real file, runs the installed console script on it through a
plain path, file://, pvc:// (KNN_PVC_ROOT) or http:// (a real HTTP server on
loopback), and checks the artifact against the data the test wrote.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import hnswlib
import numpy as np
import numpy.typing as npt
import pytest
from knn_contracts.artifact import BuildSummary, Manifest
from knn_serving import artifact

if TYPE_CHECKING:  # mypy resolves modules from the repository root...
    from tests.dataplane import datasets as ds
else:  # ...pytest puts this directory (it has no __init__.py) on sys.path.
    import datasets as ds

KNN_BUILD = Path(sys.executable).parent / "knn-build"
PARAMS = (
    "--metric", "l2", "--m", "12", "--ef-construction", "64", "--ef-search", "64",
    "--k", "10", "--probe-queries", "100", "--min-recall", "0.9",
)  # fmt: skip

N, D = 1200, 12
FLOATS = ds.gaussian(N, D, seed=11)
BYTES = ds.byte_vectors(N, 16, seed=12)
INT_IDS = ds.int_ids(N, seed=13)
STR_IDS = ds.str_ids(N)


@dataclass(frozen=True)
class Case:
    """One source file (and maybe an ids file) and what the artifact must hold."""

    filename: str
    format: str
    write: Callable[[Path], object]
    expected: npt.NDArray[np.float32]
    ids: list[int] | list[str] | None = None
    ids_file: str | None = None
    args: tuple[str, ...] = ()
    extra_files: dict[str, Callable[[Path], object]] = field(default_factory=dict)


CASES: dict[str, Case] = {
    "npy-float32": Case("v.npy", "npy", lambda p: ds.write_npy(p, FLOATS), FLOATS),
    "npy-float64": Case(
        "v.npy",
        "npy",
        lambda p: ds.write_npy(p, FLOATS.astype(np.float64) / 3.0),
        (FLOATS.astype(np.float64) / 3.0).astype(np.float32),
    ),
    "npy-fortran-order": Case(
        "v.npy", "npy", lambda p: ds.write_npy(p, FLOATS, fortran=True), FLOATS
    ),
    "npy-with-json-ids": Case(
        "v.npy",
        "npy",
        lambda p: ds.write_npy(p, FLOATS),
        FLOATS,
        ids=STR_IDS,
        ids_file="ids.json",
        extra_files={"ids.json": lambda p: ds.write_ids(p, STR_IDS)},
    ),
    "fvecs": Case("v.fvecs", "fvecs", lambda p: ds.write_fvecs(p, FLOATS), FLOATS),
    "fvecs-with-int-ids": Case(
        "v.fvecs",
        "fvecs",
        lambda p: ds.write_fvecs(p, FLOATS),
        FLOATS,
        ids=INT_IDS.tolist(),
        ids_file="ids.npy",
        extra_files={"ids.npy": lambda p: ds.write_ids(p, INT_IDS)},
    ),
    "bvecs": Case("v.bvecs", "bvecs", lambda p: ds.write_bvecs(p, BYTES), BYTES.astype(np.float32)),
    "parquet-list": Case(
        "v.parquet",
        "parquet",
        lambda p: ds.write_parquet(
            p,
            FLOATS,
            column="vec",
            ids=STR_IDS,
            id_column="key",
            extra_columns={"tags": [[1.0, 2.0]] * N},  # a second list column: --column needed
            row_group_size=500,
        ),
        FLOATS,
        ids=STR_IDS,
        args=("--column", "vec", "--id-column", "key"),
    ),
    "parquet-fixed-size-list": Case(
        "v.parquet",
        "parquet",
        lambda p: ds.write_parquet(
            p, FLOATS, column="emb", fixed_size=True, ids=INT_IDS, id_column="doc"
        ),
        FLOATS,
        ids=INT_IDS.tolist(),
        args=("--column", "emb", "--id-column", "doc"),
    ),
    "parquet-float64-default-column": Case(
        "v.pq",
        "parquet",
        lambda p: ds.write_parquet(p, FLOATS.astype(np.float64), column="embedding"),
        FLOATS,
    ),
    "explicit-format-fvecs": Case(
        "vectors.bin",
        "fvecs",
        lambda p: ds.write_fvecs(p, FLOATS),
        FLOATS,
        args=("--format", "fvecs"),
    ),
    "explicit-format-overrides-extension": Case(
        "looks-like.npy",
        "bvecs",
        lambda p: ds.write_bvecs(p, BYTES),
        BYTES.astype(np.float32),
        args=("--format", "bvecs"),
    ),
}

LOCATIONS = ("path", "file", "pvc", "http")
# Every format through a plain path and over HTTP (the two loader code paths:
# memory map and downloaded bytes); file:// and pvc:// resolve to paths, so a
# few formats suffice there.
MATRIX = [(case, loc) for loc in ("path", "http") for case in CASES] + [
    (case, loc)
    for loc in ("file", "pvc")
    for case in ("npy-float32", "fvecs-with-int-ids", "bvecs", "parquet-list")
]


@contextlib.contextmanager
def located(
    location: str, root: Path
) -> Iterator[tuple[Path, Callable[[str], str], dict[str, str]]]:
    """A directory to write files into, the URI knn-build is given for a file
    name there, and extra environment for knn-build."""
    assert location in LOCATIONS
    if location == "http":
        www = root / "www"
        data = www / "sub"
        data.mkdir(parents=True)
        with ds.serve_directory(www) as base:
            yield data, lambda name: f"{base}/sub/{name}", {}
    elif location == "pvc":
        pvc_root = root / "pvcs"
        data = pvc_root / "claim-a" / "emb"
        yield data, lambda name: f"pvc://claim-a/emb/{name}", {"KNN_PVC_ROOT": str(pvc_root)}
    elif location == "file":
        data = root / "data"
        yield data, lambda name: (data / name).as_uri(), {}
    else:
        data = root / "data"
        yield data, lambda name: str(data / name), {}


def knn_build(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KNN_BUILD), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        check=False,
    )


@pytest.mark.parametrize(("case_name", "location"), MATRIX)
def test_format_and_location(tmp_path: Path, case_name: str, location: str) -> None:
    case = CASES[case_name]
    out = tmp_path / "out"
    with located(location, tmp_path) as (data, uri_of, env):
        source = data / case.filename
        case.write(source)
        for name, write in case.extra_files.items():
            write(data / name)
        args = ["--source", uri_of(case.filename), *PARAMS, *case.args, "--out", str(out)]
        if case.ids_file:
            args += ["--ids", uri_of(case.ids_file)]
        run = knn_build(*args, env=env)

    assert run.returncode == 0, run.stderr
    summary = BuildSummary.model_validate_json(run.stdout)
    assert summary.outcome == "Succeeded"
    assert summary.vectors == N
    assert summary.dimension == case.expected.shape[1]
    assert summary.version is not None
    directory = out / summary.version
    assert summary.artifact == str(directory)

    manifest = artifact.verify(directory)
    assert isinstance(manifest, Manifest)
    assert (manifest.count, manifest.dimension) == case.expected.shape
    assert manifest.source.format == case.format
    assert manifest.source.uri == uri_of(case.filename)
    assert manifest.source.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert manifest.source.ids_uri == (uri_of(case.ids_file) if case.ids_file else None)
    assert manifest.source.ids_sha256 == (
        hashlib.sha256((data / case.ids_file).read_bytes()).hexdigest() if case.ids_file else None
    )
    options = dict(zip(case.args[::2], case.args[1::2], strict=True))
    assert manifest.source.column == options.get("--column")
    assert manifest.source.id_column == options.get("--id-column")

    # The vectors in the artifact are the ones in the file, row for row.
    # Held-out probe rows are in probes.npz (the side list), every other row in the graph.
    probes = artifact.Probes.load(directory / "probes.npz")
    assert (probes.self_labels >= 0).all()
    np.testing.assert_array_equal(probes.queries, case.expected[probes.self_labels])
    index = hnswlib.Index(space="l2", dim=manifest.dimension)
    index.load_index(str(directory / "index.bin"), max_elements=manifest.count)
    in_graph = set(index.get_ids_list())
    held_out = set(probes.self_labels.tolist())
    assert not in_graph & held_out
    assert in_graph | held_out == set(range(N))
    some = sorted(in_graph)[:: max(1, len(in_graph) // 4)]
    np.testing.assert_array_equal(np.asarray(index.get_items(some)), case.expected[some])

    with (directory / "ids.npy").open("rb") as f:
        ids = np.load(f, allow_pickle=False)
    if case.ids is None:
        assert manifest.id_type == "int"
        np.testing.assert_array_equal(ids, np.arange(N))
    else:
        assert manifest.id_type == ("int" if isinstance(case.ids[0], int) else "str")
        assert ids.tolist() == case.ids
