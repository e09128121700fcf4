"""The artifact `knn-build` writes, for every metric: layout, checksums, ids, probes,
and a recall that this test recomputes on its own (hnswlib + a numpy brute force
written in tests/dataplane/datasets.py, not knn_serving.exact)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import hnswlib
import numpy as np
import numpy.typing as npt
import pytest
from knn_contracts.artifact import BuildSummary, Manifest, Metric
from knn_serving import artifact

if TYPE_CHECKING:  # mypy resolves modules from the repository root...
    from tests.dataplane import datasets as ds
else:  # ...pytest puts this directory (it has no __init__.py) on sys.path.
    import datasets as ds

KNN_BUILD = Path(sys.executable).parent / "knn-build"
N, D, K, PROBES = 2000, 16, 10, 300
M, EF_CONSTRUCTION, EF_SEARCH, MIN_RECALL = 8, 40, 12, 0.5
METRICS: tuple[Metric, ...] = ("l2", "ip", "cosine")
ARTIFACT_FILES = {"manifest.json", "index.bin", "ids.npy", "probes.npz"}


def knn_build(*args: str | Path | float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KNN_BUILD), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ.copy(),
        check=False,
    )


@dataclass(frozen=True)
class Built:
    data: npt.NDArray[np.float32]
    metric: Metric
    out: Path
    directory: Path
    summary: BuildSummary
    summary_file_text: str
    stdout: str
    manifest: Manifest


def build(tmp: Path, metric: Metric, *extra: str | Path) -> Built:
    data = ds.gaussian(N, D, seed=21)
    source = ds.write_npy(tmp / "data.npy", data)
    out, summary_file = tmp / "out", tmp / "summary.json"
    run = knn_build(
        "--source", source, "--metric", metric,
        "--m", M, "--ef-construction", EF_CONSTRUCTION, "--ef-search", EF_SEARCH,
        "--probe-queries", PROBES, "--k", K, "--min-recall", MIN_RECALL,
        "--threads", "2", "--summary-file", summary_file, "--out", out, *extra,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    summary = BuildSummary.model_validate_json(run.stdout)
    assert summary.version is not None
    directory = out / summary.version
    manifest = Manifest.model_validate_json((directory / "manifest.json").read_bytes())
    return Built(
        data, metric, out, directory, summary, summary_file.read_text(), run.stdout, manifest
    )


@pytest.fixture(scope="module", params=METRICS)
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Built:
    metric: Metric = request.param
    return build(tmp_path_factory.mktemp(f"build-{metric}"), metric)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_index(b: Built) -> hnswlib.Index:
    index = hnswlib.Index(space=b.metric, dim=D)
    index.load_index(str(b.directory / "index.bin"), max_elements=N)
    index.set_ef(EF_SEARCH)
    return index


def test_layout_manifest_and_checksums(built: Built) -> None:
    assert sorted(p.name for p in built.out.iterdir()) == [built.directory.name]
    assert {p.name for p in built.directory.iterdir()} == ARTIFACT_FILES
    m = built.manifest
    assert set(m.files) == ARTIFACT_FILES - {"manifest.json"}
    for name, digest in m.files.items():
        assert sha256(built.directory / name) == digest, name
    assert artifact.verify(built.directory) == m
    assert m.format_version == 2
    assert m.kind == "hnsw"
    assert m.version == built.directory.name
    assert (m.count, m.dimension, m.metric, m.id_type) == (N, D, built.metric, "int")
    assert (m.parameters.m, m.parameters.ef_construction, m.parameters.ef_search) == (
        M,
        EF_CONSTRUCTION,
        EF_SEARCH,
    )
    v = m.validation
    assert (v.probe_queries, v.k, v.min_recall, v.held_out) == (PROBES, K, MIN_RECALL, True)
    assert (v.method, v.held_out_rows, v.seed) == ("held-out", PROBES, 42)
    assert MIN_RECALL <= v.recall <= 1.0
    assert load_index(built).get_current_count() == N - PROBES
    assert m.build_seconds > 0
    with (built.directory / "ids.npy").open("rb") as f:
        np.testing.assert_array_equal(np.load(f, allow_pickle=False), np.arange(N))


def test_the_summary_line(built: Built) -> None:
    # One line on stdout, the same line in --summary-file, small enough for the kubelet.
    assert built.stdout.endswith("\n")
    assert built.stdout.count("\n") == 1
    assert built.stdout == built.summary_file_text
    assert len(built.stdout.encode()) < 4096
    s = built.summary
    assert s.outcome == "Succeeded"
    assert s.message == ""
    assert (s.vectors, s.dimension, s.version) == (N, D, built.manifest.version)
    assert s.artifact == str(built.directory)
    assert s.sha256 == sha256(built.directory / "manifest.json")
    assert s.recall == round(built.manifest.validation.recall, 6)
    assert s.build_seconds is not None and s.build_seconds >= built.manifest.build_seconds


def test_probes_are_held_out_rows_with_their_exact_neighbours(built: Built) -> None:
    with np.load(built.directory / "probes.npz", allow_pickle=False) as z:
        assert set(z.files) == {"queries", "truth", "self_labels"}
        queries, truth, own = z["queries"], z["truth"], z["self_labels"]
    assert queries.shape == (PROBES, D) and queries.dtype == np.float32
    assert truth.shape == (PROBES, K) and truth.dtype == np.int64
    assert own.shape == (PROBES,)
    assert len(set(own.tolist())) == PROBES
    assert own.min() >= 0 and own.max() < N
    np.testing.assert_array_equal(queries, built.data[own])
    assert not (truth == own[:, None]).any(), "a probe's own row is in its truth"
    mine = ds.brute_force(built.data, queries, K, built.metric, exclude=own)
    # Identical except, at most, a near-tie swapped at float32 precision.
    assert (truth == mine).mean() > 0.999


def _exact_top(
    data: npt.NDArray[np.float32], query: npt.NDArray[np.float32], rows: list[int], metric: Metric
) -> list[int]:
    """The k nearest of `rows` to `query`, in float64 (ties by row number)."""
    x = np.asarray(data[rows], dtype=np.float64)
    q = np.asarray(query, dtype=np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        q = q / np.linalg.norm(q)
    d = ((x - q) ** 2).sum(axis=1) if metric == "l2" else -(x @ q)
    order = np.lexsort((np.asarray(rows), np.asarray(d)))
    return [rows[i] for i in order[:K]]


def test_recall_agrees_with_an_independent_computation(built: Built) -> None:
    """The served answer is the graph's answer merged with the exact side list of
    held-out rows (the probe's own row excluded): recomputed here without
    knn_serving's search code, it gives the recall the manifest reports."""
    with np.load(built.directory / "probes.npz", allow_pickle=False) as z:
        queries, own = z["queries"], z["self_labels"]
    truth = ds.brute_force(built.data, queries, K, built.metric, exclude=own)
    labels, _ = load_index(built).knn_query(queries, k=K)
    held_out = own.tolist()
    hits = 0
    for row, me, q, want in zip(np.asarray(labels), held_out, queries, truth, strict=True):
        candidates = sorted({int(x) for x in row} | (set(held_out) - {me}))
        found = _exact_top(built.data, q, candidates, built.metric)
        hits += len(set(found) & set(want.tolist()))
    recall = hits / (PROBES * K)
    # The answer space is discrete: a near-tie counted differently moves it by 1/(P*K).
    assert abs(recall - built.manifest.validation.recall) <= 3.0 / (PROBES * K) + 1e-12
    assert built.summary.recall == pytest.approx(recall, abs=3.0 / (PROBES * K) + 1e-6)
    # Small parameters on purpose: recall below 1 makes the comparison mean something.
    assert recall < 1.0


def test_the_index_answers_with_the_right_metric(built: Built) -> None:
    rng = np.random.default_rng(5)
    fresh = rng.standard_normal((50, D), dtype=np.float32)
    index = load_index(built)
    index.set_ef(200)
    labels, _ = index.knn_query(fresh, k=1)
    in_graph = sorted(index.get_ids_list())
    exact = [_exact_top(built.data, q, in_graph, built.metric)[0] for q in fresh]
    assert (np.asarray(labels)[:, 0] == np.asarray(exact)).mean() >= 0.95


@pytest.mark.parametrize(
    ("ids_name", "ids"),
    [("ids.npy", ds.int_ids(N, seed=3).tolist()), ("ids.txt", ds.str_ids(N, prefix="item"))],
    ids=["int", "str"],
)
def test_ids_are_kept_by_position(
    tmp_path: Path, ids_name: str, ids: list[int] | list[str]
) -> None:
    ids_file = ds.write_ids(tmp_path / ids_name, ids)
    b = build(tmp_path, "l2", "--ids", ids_file)
    assert b.manifest.id_type == ("int" if isinstance(ids[0], int) else "str")
    assert b.manifest.source.ids_uri == str(ids_file)
    with (b.directory / "ids.npy").open("rb") as f:
        stored = np.load(f, allow_pickle=False)
    assert stored.tolist() == ids
    # Label i of the index is row i of the source: its id is ids[i].
    index = load_index(b)
    index.set_ef(100)
    rows = sorted(index.get_ids_list())[:: N // 3]
    labels, _ = index.knn_query(b.data[rows], k=1)
    assert [stored[int(lab)] for lab in np.asarray(labels)[:, 0]] == [ids[r] for r in rows]


@pytest.mark.parametrize("metric", METRICS)
def test_probe_source_gives_outside_queries(tmp_path: Path, metric: Metric) -> None:
    probe_vectors = ds.gaussian(120, D, seed=99)
    probe_file = ds.write_fvecs(tmp_path / "probes.fvecs", probe_vectors)
    b = build(tmp_path, metric, "--probe-source", probe_file, "--probe-queries", "80")
    assert b.manifest.validation.held_out is False
    assert b.manifest.validation.probe_queries == 80
    probes = artifact.Probes.load(b.directory / "probes.npz")
    assert (probes.self_labels == -1).all()
    np.testing.assert_array_equal(probes.queries, probe_vectors[:80])
    truth = ds.brute_force(b.data, probes.queries, K, metric)
    assert (probes.truth == truth).mean() > 0.999
    labels, _ = load_index(b).knn_query(probes.queries, k=K)
    hits = sum(
        len(set(row.tolist()) & set(want.tolist()))
        for row, want in zip(np.asarray(labels), truth, strict=True)
    )
    assert abs(hits / (80 * K) - b.manifest.validation.recall) <= 1.0 / (80 * K) + 1e-12
