"""`knn-build --kind kmeans`: the real CLI on real files. What it records is checked
against what this test computes on its own: scikit-learn's silhouette_score and
adjusted_rand_score, and a numpy brute-force nearest centroid (datasets.nearest)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pytest
from knn_contracts.artifact import BuildExit, BuildSummary
from knn_contracts.kmeans import KMeansManifest
from knn_serving import artifact
from knn_serving.errors import ArtifactError
from sklearn.metrics import adjusted_rand_score, silhouette_score

if TYPE_CHECKING:  # mypy resolves modules from the repository root...
    from tests.dataplane import datasets as ds
    from tests.dataplane import servers as sv
else:  # ...pytest puts this directory (it has no __init__.py) on sys.path.
    import datasets as ds
    import servers as sv

KNN_BUILD = Path(sys.executable).parent / "knn-build"
KNN_ARTIFACT = Path(sys.executable).parent / "knn-artifact"
N, D, TRUE_K, PROBES = 3000, 8, 5, 300


def knn_build(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KNN_BUILD), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ.copy(),
        check=False,
    )


@pytest.fixture(scope="module")
def blobs() -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    data, truth, _ = ds.blobs(N, D, TRUE_K, seed=3)
    return data, truth


@pytest.fixture(scope="module")
def ranged(
    tmp_path_factory: pytest.TempPathFactory,
    blobs: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]],
) -> sv.KMeansArtifact:
    """A range search over 2..8 on five well-separated blobs."""
    tmp = tmp_path_factory.mktemp("kmeans-range")
    return sv.build_kmeans_artifact(tmp, blobs[0], clusters_range="2:8", probe_points=PROBES)


def split(art: sv.KMeansArtifact) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float32]]:
    """(training-row mask, probe points): probes are held-out rows, found by value."""
    probes = artifact.KMeansProbes.load(art.directory / "probes.npz")
    held = {row.tobytes() for row in probes.points}
    train = np.array([row.tobytes() not in held for row in art.data])
    return train, probes.points


def test_range_picks_the_true_k(ranged: sv.KMeansArtifact) -> None:
    m = ranged.manifest
    assert m.kind == "kmeans"
    assert m.parameters.clusters == TRUE_K
    assert [p.k for p in m.validation.elbow] == list(range(2, 9))
    best = max(m.validation.elbow, key=lambda p: p.silhouette)
    assert best.k == TRUE_K
    # The elbow: inertia falls steeply up to the true k, then flattens.
    inertia = {p.k: p.inertia for p in m.validation.elbow}
    assert inertia[TRUE_K - 1] > 2 * inertia[TRUE_K]
    assert inertia[TRUE_K] < 1.2 * inertia[TRUE_K + 1]


def test_recovers_the_true_clusters(
    ranged: sv.KMeansArtifact, blobs: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]
) -> None:
    centroids = np.load(ranged.directory / "centroids.npy")
    labels, _ = ds.nearest(blobs[0], centroids)
    assert adjusted_rand_score(blobs[1], labels) > 0.99


def test_recorded_statistics_match_an_independent_computation(ranged: sv.KMeansArtifact) -> None:
    m = ranged.manifest
    train, points = split(ranged)
    assert int(train.sum()) == m.validation.training_rows == N - PROBES
    x = ranged.data[train]
    centroids = np.load(ranged.directory / "centroids.npy")
    labels, dist = ds.nearest(x, centroids)
    # The sample bound (5000) exceeds the training rows: the sample is all of them.
    assert m.validation.silhouette_rows == x.shape[0]
    assert m.validation.silhouette == pytest.approx(silhouette_score(x, labels), abs=1e-5)
    assert m.validation.inertia == pytest.approx(float((dist**2).sum()), rel=1e-6)
    assert m.cluster_sizes == np.bincount(labels, minlength=TRUE_K).tolist()
    assert m.distances.mean == pytest.approx(float(dist.mean()), rel=1e-6)
    assert m.distances.quantiles["0.5"] == pytest.approx(float(np.median(dist)), rel=1e-4)
    assert m.distances.buckets == sorted(set(m.distances.buckets))
    upper = np.asarray([*m.distances.buckets, np.inf])
    assert (
        m.distances.counts
        == np.bincount(np.searchsorted(upper, dist), minlength=upper.shape[0]).tolist()
    )
    probes = artifact.KMeansProbes.load(ranged.directory / "probes.npz")
    p_labels, p_dist = ds.nearest(points, centroids)
    assert probes.assignments.tolist() == p_labels.tolist()
    np.testing.assert_allclose(probes.distances, p_dist, rtol=1e-6)
    assert m.validation.probe_inertia == pytest.approx(float((p_dist**2).sum()), rel=1e-6)


def test_summary_is_compact_and_says_its_kind(ranged: sv.KMeansArtifact) -> None:
    s, m = ranged.summary, ranged.manifest
    assert (s.outcome, s.kind, s.clusters, s.version) == ("Succeeded", "kmeans", TRUE_K, "km1")
    assert s.silhouette == pytest.approx(m.validation.silhouette, abs=1e-6)
    assert s.elbow is not None
    assert [k for k, _, _ in s.elbow] == [p.k for p in m.validation.elbow]
    line = s.model_dump_json(exclude_none=True)
    assert len(line.encode()) <= 4096


def test_a_wide_range_is_thinned_in_the_summary(tmp_path: Path) -> None:
    data, _, _ = ds.blobs(800, 4, 3, seed=5)
    art = sv.build_kmeans_artifact(
        tmp_path, data, clusters_range="2:61", probe_points=50, extra=["--n-init", "1"]
    )
    assert len(art.manifest.validation.elbow) == 60
    assert art.summary.elbow is not None
    ks = [k for k, _, _ in art.summary.elbow]
    assert len(ks) <= 41
    assert ks[0] == 2 and ks[-1] == 61 and art.manifest.parameters.clusters in ks
    text = (tmp_path / "km1-summary.json").read_text()
    assert len(text.encode()) <= 4096


def test_minibatch_above_the_threshold(
    tmp_path: Path, blobs: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]
) -> None:
    art = sv.build_kmeans_artifact(
        tmp_path,
        blobs[0],
        clusters=TRUE_K,
        extra=["--mini-batch-above", "1000", "--batch-size", "256"],
    )
    p = art.manifest.parameters
    assert (p.algorithm, p.batch_size, p.mini_batch_above) == ("minibatch", 256, 1000)
    centroids = np.load(art.directory / "centroids.npy")
    labels, _ = ds.nearest(blobs[0], centroids)
    assert adjusted_rand_score(blobs[1], labels) > 0.99
    full = sv.build_kmeans_artifact(tmp_path / "full", blobs[0], clusters=TRUE_K)
    assert full.manifest.parameters.algorithm == "full"


def test_same_inputs_reuse_the_version(
    tmp_path: Path, blobs: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]
) -> None:
    source = ds.write_npy(tmp_path / "data.npy", blobs[0])
    args: list[str | Path] = [
        "--kind",
        "kmeans",
        "--source",
        source,
        "--clusters",
        "5",
        "--out",
        tmp_path / "out",
    ]
    first = knn_build(*args)
    assert first.returncode == 0, first.stderr
    again = knn_build(*args)
    assert again.returncode == 0, again.stderr
    assert "reusing it" in again.stderr
    a, b = (BuildSummary.model_validate_json(r.stdout.strip()) for r in (first, again))
    assert a.version == b.version and a.sha256 == b.sha256
    assert (tmp_path / "out" / str(a.version) / "centroids.npy").is_file()
    other = knn_build(*args[:-2], "--seed", "7", "--version", str(a.version), *args[-2:])
    assert other.returncode == BuildExit.STORAGE_ERROR
    assert "already exists with other inputs (seed 42 != 7" in other.stderr


def test_knn_artifact_verifies_a_model(ranged: sv.KMeansArtifact) -> None:
    run = subprocess.run(
        [str(KNN_ARTIFACT), "verify", str(ranged.directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "kmeans version km1 verified" in run.stdout
    assert f"{TRUE_K} clusters" in run.stdout


# --- the gate -------------------------------------------------------------------------------


def failed(run: subprocess.CompletedProcess[str], out: Path, code: int, says: str) -> None:
    assert run.returncode == code, run.stdout + run.stderr
    summary = BuildSummary.model_validate_json(run.stdout.strip())
    assert summary.outcome == "Failed"
    assert says in summary.message, summary.message
    assert says in run.stderr
    # Nothing published, nothing left staged.
    assert not out.exists() or not [p for p in out.iterdir() if not p.name.startswith(".")]
    assert not out.exists() or not list(out.iterdir())


def test_min_silhouette_gate(
    tmp_path: Path, blobs: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]
) -> None:
    source = ds.write_npy(tmp_path / "d.npy", blobs[0])
    out = tmp_path / "out"
    base: list[str | Path] = ["--kind", "kmeans", "--source", source, "--out", out]
    # Three clusters of five blobs: a poorer silhouette than the true k gets.
    run = knn_build(*base, "--clusters", "3", "--min-silhouette", "0.75")
    failed(run, out, BuildExit.GATE_FAILED, "is below --min-silhouette 0.75")
    ok = knn_build(*base, "--clusters", "5", "--min-silhouette", "0.75")
    assert ok.returncode == 0, ok.stderr


def test_min_cluster_fraction_gate(tmp_path: Path) -> None:
    data, _, _ = ds.blobs(2000, D, 4, seed=8)
    # A fifth, far-away group of 40 rows: k=5 gives it a cluster of its own.
    far = np.random.default_rng(9).standard_normal((40, D)).astype(np.float32) + 500.0
    source = ds.write_npy(tmp_path / "d.npy", np.vstack([data, far]))
    out = tmp_path / "out"
    base: list[str | Path] = [
        "--kind", "kmeans", "--source", source, "--clusters", "5", "--probe-queries", "10"
    ]  # fmt: skip
    run = knn_build(*base, "--out", out)  # default: 0.05 of an even share (~400) is 20
    assert run.returncode == 0, run.stderr
    sizes = KMeansManifest.model_validate_json(
        next(out.iterdir()).joinpath("manifest.json").read_bytes()
    ).cluster_sizes
    assert min(sizes) == 40
    strict = knn_build(*base, "--min-cluster-fraction", "0.5", "--out", tmp_path / "o2")
    failed(
        strict,
        tmp_path / "o2",
        BuildExit.GATE_FAILED,
        "1 of 5 clusters are empty or hold fewer than",
    )
    assert "203.0 training rows" in strict.stderr and "rows): cluster" in strict.stderr
    assert strict.stderr.rstrip().endswith(": 40 rows")


def test_inertia_regression_gate_against_previous(tmp_path: Path) -> None:
    data, _, centres = ds.blobs(3000, D, TRUE_K, seed=12)
    first = sv.build_kmeans_artifact(tmp_path / "a", data, clusters=TRUE_K, version="v1")
    # Same distribution, new draw: no regression on v1's probe points.
    rng = np.random.default_rng(13)
    fresh = (centres[rng.integers(0, TRUE_K, 3000)] + rng.standard_normal((3000, D))).astype(
        np.float32
    )
    same = sv.build_kmeans_artifact(
        tmp_path / "b",
        fresh,
        clusters=TRUE_K,
        version="v2",
        extra=["--previous", str(first.directory)],
    )
    v = same.manifest.validation
    assert v.previous == str(first.directory)
    assert v.previous_probe_inertia_mean == pytest.approx(
        first.manifest.validation.probe_inertia_mean, rel=1e-6
    )
    assert v.this_on_previous_probes_mean is not None
    assert v.previous_probe_inertia_mean is not None
    assert abs(v.this_on_previous_probes_mean / v.previous_probe_inertia_mean - 1) < 0.1
    # Two clusters only: much worse on v1's probe points.
    source = ds.write_npy(tmp_path / "c.npy", fresh)
    out = tmp_path / "c-out"
    run = knn_build(
        "--kind", "kmeans", "--source", source, "--clusters", "2", "--out", out,
        "--previous", first.directory, "--max-inertia-regression", "0.2",
    )  # fmt: skip
    failed(run, out, BuildExit.GATE_FAILED, "above --max-inertia-regression 0.2")


# --- bad input ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data, _, _ = ds.blobs(300, 4, 3, seed=1)
    return ds.write_npy(tmp_path_factory.mktemp("bad") / "d.npy", data)


BAD_FLAGS: dict[str, tuple[list[str], str]] = {
    "no-clusters": ([], "--kind kmeans needs --clusters K or --clusters-range MIN:MAX"),
    "both": (["--clusters", "3", "--clusters-range", "2:4"], "not allowed with argument"),
    "range-reversed": (["--clusters-range", "5:3"], "MAX 3 is below MIN 5"),
    "range-one": (["--clusters-range", "1:3"], "MIN must be at least 2"),
    "range-words": (["--clusters-range", "a:b"], "expected two integers MIN:MAX"),
    "one-cluster": (["--clusters", "1"], "--clusters must be between 2"),
    "ip-metric": (["--clusters", "3", "--metric", "ip"], "supports --metric l2 only"),
    "hnsw-flags": (["--clusters", "3", "--m", "8", "--k", "5"], "--m, --k not used by --kind"),
    "regression-alone": (
        ["--clusters", "3", "--max-inertia-regression", "0.1"],
        "--max-inertia-regression needs --previous",
    ),
    "silhouette-range": (["--clusters", "3", "--min-silhouette", "2"], "between -1 and 1"),
    "n-init-zero": (["--clusters", "3", "--n-init", "0"], "--n-init must be between 1"),
    "too-many-clusters": (
        ["--clusters", "400", "--probe-queries", "30"],
        "270 training rows (after 30 held-out probe points) cannot make 400 clusters",
    ),
    "all-probes": (["--clusters", "3", "--probe-queries", "300"], "would leave no training"),
}


@pytest.mark.parametrize("name", list(BAD_FLAGS))
def test_bad_flags_exit_2_naming_the_problem(tmp_path: Path, small_source: Path, name: str) -> None:
    flags, says = BAD_FLAGS[name]
    run = knn_build("--kind", "kmeans", "--source", small_source, "--out", tmp_path, *flags)
    assert run.returncode == BuildExit.BAD_INPUT, run.stdout + run.stderr
    assert says in run.stderr, run.stderr
    assert says in json.loads(run.stdout.strip())["message"]


def test_kmeans_flags_are_refused_for_hnsw(tmp_path: Path, small_source: Path) -> None:
    run = knn_build(
        "--source", small_source, "--metric", "l2", "--clusters", "3", "--out", tmp_path
    )
    assert run.returncode == BuildExit.BAD_INPUT
    assert "--clusters only used by --kind kmeans" in run.stderr


def test_nan_in_the_source(tmp_path: Path) -> None:
    data, _, _ = ds.blobs(300, 4, 3, seed=1)
    data[17, 2] = np.nan
    source = ds.write_npy(tmp_path / "nan.npy", data)
    run = knn_build("--kind", "kmeans", "--source", source, "--clusters", "3", "--out", tmp_path)
    assert run.returncode == BuildExit.BAD_INPUT
    assert "row 17 contains NaN or Inf" in run.stderr


def test_previous_of_the_other_kind_is_refused(tmp_path: Path, small_source: Path) -> None:
    data = np.load(small_source)
    hnsw = sv.build_artifact(tmp_path / "h", data, "l2", probe_queries=20, k=5, ef_search=16)
    run = knn_build(
        "--kind", "kmeans", "--source", small_source, "--clusters", "3", "--probe-queries", "30",
        "--previous", hnsw.directory, "--out", tmp_path / "out",
    )  # fmt: skip
    assert run.returncode == BuildExit.BAD_INPUT, run.stderr
    assert "--previous" in run.stderr and "is an HNSW index (kind hnsw" in run.stderr


def test_hnsw_build_refuses_a_model_in_its_place(tmp_path: Path, small_source: Path) -> None:
    model = knn_build(
        "--kind", "kmeans", "--source", small_source, "--clusters", "3", "--probe-queries", "30",
        "--version", "v1", "--out", tmp_path,
    )  # fmt: skip
    assert model.returncode == 0, model.stderr
    run = knn_build(
        "--source", small_source, "--metric", "l2", "--version", "v1", "--out", tmp_path,
        "--probe-queries", "30",
    )  # fmt: skip
    assert run.returncode == BuildExit.STORAGE_ERROR
    assert "is a k-means model (kind kmeans" in run.stderr
    with pytest.raises(ArtifactError, match="is a k-means model"):
        artifact.verify(tmp_path / "v1")
    assert isinstance(artifact.verify_any(tmp_path / "v1"), KMeansManifest)


def test_probe_source_points_are_not_held_out(
    tmp_path: Path, blobs: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]
) -> None:
    source = ds.write_npy(tmp_path / "d.npy", blobs[0])
    others, _, _ = ds.blobs(150, D, TRUE_K, seed=77)  # other points, other draws
    probe_file = ds.write_npy(tmp_path / "p.npy", others)
    out = tmp_path / "out"
    run = knn_build(
        "--kind", "kmeans", "--source", source, "--clusters", "5", "--probe-source", probe_file,
        "--probe-queries", "100", "--version", "p1", "--out", out,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    m = artifact.verify_kmeans(out / "p1")
    v = m.validation
    assert (v.method, v.training_rows, v.probe_points) == ("probe-source", N, 100)
    assert v.probe_source == str(probe_file)
    probes = artifact.KMeansProbes.load(out / "p1" / "probes.npz")
    np.testing.assert_array_equal(probes.points, others[:100])
    want, _ = ds.nearest(others[:100], np.load(out / "p1" / "centroids.npy"))
    assert probes.assignments.tolist() == want.tolist()
