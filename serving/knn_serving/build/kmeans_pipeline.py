"""The k-means build: load → hold out probe points → train each k → choose k by
silhouette → gate → publish (the shared step of build/publish.py).

Training loads the training rows into memory as float32 (scikit-learn needs an
array); the source itself may be a memory map. Above `mini_batch_above`
training rows MiniBatchKMeans replaces KMeans (docs/benchmarks.md measures both
at the threshold).
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from knn_contracts.artifact import SourceInfo
from knn_contracts.identity import KMeansBuildInputs, version_of
from knn_contracts.kmeans import (
    CENTROIDS_FILE,
    KMEANS_PROBES_FILE,
    Algorithm,
    ElbowPoint,
    KMeansManifest,
    KMeansParameters,
    KMeansValidation,
)

from .. import artifact
from ..artifact import KMeansProbes
from ..centroids import cluster_sizes, inertia, nearest_centroid
from ..errors import ArtifactError, InputError
from .kmeans_gate import Measured, Thresholds, check
from .kmeans_select import choose, distance_summary
from .kmeans_train import F32, TrainSettings, fit_centroids, silhouette
from .publish import Target, existing, existing_manifest_sha256, publish, source_digest
from .sources import Source, check_finite, load_source

log = logging.getLogger("knn-build")

# Training rows above which MiniBatchKMeans runs (measured in docs/benchmarks.md).
MINI_BATCH_ABOVE = 100_000


@dataclass(frozen=True)
class KMeansOptions:
    source: str
    out: str
    clusters_min: int
    clusters_max: int
    n_init: int = 3
    max_iter: int = 300
    seed: int = 42
    mini_batch_above: int = MINI_BATCH_ABOVE
    batch_size: int = 4096
    probe_points: int = 500
    probe_source: str | None = None
    silhouette_sample: int = 5000
    min_silhouette: float | None = None
    min_cluster_fraction: float = 0.05
    max_inertia_regression: float = 0.1
    previous: str | None = None
    format: str | None = None
    column: str | None = None
    dimension: int | None = None
    threads: int = 1
    version: str | None = None


@dataclass(frozen=True)
class KMeansResult:
    manifest: KMeansManifest
    artifact_uri: str
    manifest_sha256: str


def _identity(opts: KMeansOptions, source_sha: str, probe_sha: str | None) -> KMeansBuildInputs:
    return KMeansBuildInputs(
        source_uri=opts.source,
        source_format=opts.format,
        dimension=opts.dimension,
        column=opts.column,
        clusters_min=opts.clusters_min,
        clusters_max=opts.clusters_max,
        n_init=opts.n_init,
        max_iter=opts.max_iter,
        seed=opts.seed,
        algorithm=f"minibatch-above-{opts.mini_batch_above}",
        batch_size=opts.batch_size,
        probe_points=opts.probe_points,
        probe_source=opts.probe_source,
        silhouette_sample=opts.silhouette_sample,
        source_sha256=source_sha,
        probe_source_sha256=probe_sha,
    )


def _split(opts: KMeansOptions, src: Source) -> tuple[F32, F32]:
    """(training rows, probe points): held-out rows, or --probe-source vectors.

    One in-memory float32 copy of the training rows (indexing a memory-mapped
    source copies only the rows it selects)."""
    if opts.probe_source is not None:
        ps = load_source(opts.probe_source, None)
        if ps.dimension != src.dimension:
            raise InputError(
                f"{opts.probe_source}: probe vectors have dimension {ps.dimension}, "
                f"source has {src.dimension}"
            )
        check_finite(ps.vectors, opts.probe_source)
        points = np.ascontiguousarray(ps.vectors[: opts.probe_points], dtype=np.float32)
        return np.ascontiguousarray(src.vectors, dtype=np.float32), points
    if opts.probe_points >= src.count:
        raise InputError(
            f"--probe-queries {opts.probe_points} held-out points would leave no training rows "
            f"of the {src.count} in {opts.source}"
        )
    rng = np.random.default_rng(opts.seed)
    held = rng.choice(src.count, size=opts.probe_points, replace=False)
    keep = np.ones(src.count, dtype=bool)
    keep[held] = False
    train = np.ascontiguousarray(src.vectors[keep], dtype=np.float32)
    return train, np.ascontiguousarray(src.vectors[np.sort(held)], dtype=np.float32)


@dataclass(frozen=True)
class Previous:
    """The previous version's centroids and probe points, loaded before training so
    that a bad --previous fails at once, not after the training it would judge."""

    uri: str
    centroids: F32
    points: F32

    def means(self, centroids: F32) -> tuple[float, float]:
        """Mean squared distance of the previous probe points to the previous centroids
        and to `centroids`, recomputed from its files (not its manifest)."""
        _, before = nearest_centroid(self.points, self.centroids)
        _, after = nearest_centroid(self.points, centroids)
        n = self.points.shape[0]
        return inertia(before) / n, inertia(after) / n


def _load_previous(uri: str | None, dimension: int) -> Previous | None:
    if uri is None:
        return None
    with tempfile.TemporaryDirectory(prefix="knn-previous-") as tmp:
        try:
            directory = artifact.localize(uri, Path(tmp))
            manifest = artifact.verify_kmeans(directory)
        except ArtifactError as e:
            raise InputError(f"--previous {uri}: {e}") from None
        if manifest.dimension != dimension:
            raise InputError(
                f"--previous {uri}: dimension {manifest.dimension}, this build has {dimension}"
            )
        centroids = np.load(directory / CENTROIDS_FILE, allow_pickle=False)
        points = KMeansProbes.load(directory / KMEANS_PROBES_FILE).points
    if points.shape[0] == 0:
        raise InputError(f"--previous {uri}: has no probe points to compare on")
    return Previous(uri, np.asarray(centroids, dtype=np.float32), points)


def _thresholds(opts: KMeansOptions) -> Thresholds:
    return Thresholds(opts.min_silhouette, opts.min_cluster_fraction, opts.max_inertia_regression)


def _gate(
    opts: KMeansOptions,
    silhouette_value: float,
    sizes: list[int],
    centroids: F32,
    previous: Previous | None,
) -> tuple[float | None, float | None]:
    prev_mean = this_mean = None
    if previous is not None:
        prev_mean, this_mean = previous.means(centroids)
    check(Measured(silhouette_value, sizes, prev_mean, this_mean), _thresholds(opts))
    return prev_mean, this_mean


def _train_all(
    opts: KMeansOptions, train: F32, settings: TrainSettings
) -> tuple[list[ElbowPoint], dict[int, F32], int]:
    rng = np.random.default_rng([opts.seed, 1])
    size = min(opts.silhouette_sample, train.shape[0])
    sample = train[np.sort(rng.choice(train.shape[0], size=size, replace=False))]
    elbow: list[ElbowPoint] = []
    fitted: dict[int, F32] = {}
    for k in range(opts.clusters_min, opts.clusters_max + 1):
        t0 = time.perf_counter()
        centroids = fit_centroids(train, k, settings)
        _, dist = nearest_centroid(train, centroids)
        score = silhouette(sample, centroids, opts.threads)
        point = ElbowPoint(
            k=k,
            inertia=inertia(dist),
            silhouette=round(score, 6),
            seconds=round(time.perf_counter() - t0, 3),
        )
        log.info(
            "k=%d: inertia %.6g, silhouette %.4f (%d sampled rows), %.1fs",
            k,
            point.inertia,
            point.silhouette,
            size,
            point.seconds,
        )
        elbow.append(point)
        fitted[k] = centroids
    return elbow, fitted, size


def run_kmeans_build(opts: KMeansOptions) -> KMeansResult:
    t0 = time.perf_counter()
    src = load_source(opts.source, opts.format, column=opts.column)
    log.info("source %s: %d vectors of dimension %d", opts.source, src.count, src.dimension)
    if opts.dimension is not None and opts.dimension != src.dimension:
        raise InputError(
            f"{opts.source}: vectors have dimension {src.dimension}, expected {opts.dimension}"
        )
    check_finite(src.vectors, opts.source)
    source_sha = source_digest(opts.source)
    probe_sha = source_digest(opts.probe_source) if opts.probe_source is not None else None
    version = opts.version or version_of(_identity(opts, source_sha, probe_sha))
    target = Target(opts.out, version)
    inputs = SourceInfo(uri=opts.source, format=src.format, sha256=source_sha, column=opts.column)

    previous = _load_previous(opts.previous, src.dimension)
    found = existing(target)
    if found is not None:
        return _reuse(found, target, opts, source_sha, probe_sha, previous)

    train, points = _split(opts, src)
    if train.shape[0] <= opts.clusters_max:
        raise InputError(
            f"{train.shape[0]} training rows (after {points.shape[0]} held-out probe points) "
            f"cannot make {opts.clusters_max} clusters; more rows or fewer clusters"
        )
    algorithm: Algorithm = "minibatch" if train.shape[0] > opts.mini_batch_above else "full"
    settings = TrainSettings(
        algorithm, opts.n_init, opts.max_iter, opts.seed, opts.batch_size, opts.threads
    )
    log.info(
        "training %s k-means (k-means++, n_init=%d, max_iter=%d) on %d rows for k in %d..%d",
        algorithm,
        opts.n_init,
        opts.max_iter,
        train.shape[0],
        opts.clusters_min,
        opts.clusters_max,
    )
    elbow, fitted, sample_rows = _train_all(opts, train, settings)
    best = choose(elbow)
    centroids = fitted[best.k]
    labels, dist = nearest_centroid(train, centroids)
    sizes = cluster_sizes(labels, best.k)
    probe_labels, probe_dist = nearest_centroid(points, centroids)
    log.info("chose k=%d (silhouette %.4f); cluster sizes %s", best.k, best.silhouette, sizes)
    prev_mean, this_mean = _gate(opts, best.silhouette, sizes, centroids, previous)

    def write_files(stage: Path) -> None:
        with (stage / CENTROIDS_FILE).open("wb") as f:
            np.save(f, centroids, allow_pickle=False)
        KMeansProbes(points, probe_labels, probe_dist).save(stage / KMEANS_PROBES_FILE)

    probe_inertia = inertia(probe_dist)

    def make_manifest(files: dict[str, str]) -> KMeansManifest:
        return KMeansManifest(
            version=version,
            dimension=src.dimension,
            count=src.count,
            parameters=KMeansParameters(
                clusters=best.k,
                clusters_min=opts.clusters_min,
                clusters_max=opts.clusters_max,
                algorithm=algorithm,
                mini_batch_above=opts.mini_batch_above,
                batch_size=opts.batch_size if algorithm == "minibatch" else None,
                n_init=opts.n_init,
                max_iter=opts.max_iter,
                seed=opts.seed,
                silhouette_sample=opts.silhouette_sample,
            ),
            source=inputs,
            validation=KMeansValidation(
                training_rows=int(train.shape[0]),
                probe_points=int(points.shape[0]),
                method="held-out" if opts.probe_source is None else "probe-source",
                probe_source=opts.probe_source,
                probe_source_sha256=probe_sha,
                inertia=best.inertia,
                silhouette=best.silhouette,
                silhouette_rows=sample_rows,
                probe_inertia=probe_inertia,
                probe_inertia_mean=probe_inertia / max(1, points.shape[0]),
                min_silhouette=opts.min_silhouette,
                min_cluster_fraction=opts.min_cluster_fraction,
                previous=opts.previous,
                previous_probe_inertia_mean=prev_mean,
                this_on_previous_probes_mean=this_mean,
                max_inertia_regression=opts.max_inertia_regression,
                elbow=elbow,
            ),
            cluster_sizes=sizes,
            distances=distance_summary(dist),
            build_seconds=round(time.perf_counter() - t0, 3),
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            files=files,
        )

    manifest, sha = publish(target, write_files, make_manifest)
    log.info("wrote %s (k=%d, total %.1fs)", target.uri, best.k, manifest.build_seconds)
    return KMeansResult(manifest, target.uri, sha)


def _differences(
    m: KMeansManifest, opts: KMeansOptions, source_sha: str, probe_sha: str | None
) -> list[str]:
    p, v = m.parameters, m.validation
    pairs: list[tuple[str, object, object]] = [
        ("source sha256", m.source.sha256[:12], source_sha[:12]),
        ("column", m.source.column, opts.column),
        ("clusters", (p.clusters_min, p.clusters_max), (opts.clusters_min, opts.clusters_max)),
        ("n_init", p.n_init, opts.n_init),
        ("max_iter", p.max_iter, opts.max_iter),
        ("seed", p.seed, opts.seed),
        ("mini-batch threshold", p.mini_batch_above, opts.mini_batch_above),
        ("silhouette sample", p.silhouette_sample, opts.silhouette_sample),
        ("probe source", v.probe_source, opts.probe_source),
        ("probe source sha256", v.probe_source_sha256, probe_sha),
    ]
    if opts.probe_source is None:
        pairs.append(("probe points", v.probe_points, opts.probe_points))
    return [f"{name} {before} != {now}" for name, before, now in pairs if before != now]


def _reuse(
    found: artifact.AnyManifest,
    target: Target,
    opts: KMeansOptions,
    source_sha: str,
    probe_sha: str | None,
    previous: Previous | None,
) -> KMeansResult:
    """A retried Job finds its version published: check it came from these inputs
    and gate it again (the thresholds are not part of the version)."""
    artifact.refuse_other_kind(target.uri, found, "kmeans")
    assert isinstance(found, KMeansManifest)
    differences = _differences(found, opts, source_sha, probe_sha)
    if differences:
        raise ArtifactError(
            f"{target.uri}: already exists with other inputs ({'; '.join(differences)}); "
            "artifacts are immutable, choose another --version"
        )
    centroids: npt.NDArray[np.float32] = np.zeros((0, found.dimension), dtype=np.float32)
    local = target.local_out
    if previous is not None:
        if local is None:
            raise InputError("--previous with an existing remote version is not supported")
        centroids = np.load(local / target.version / CENTROIDS_FILE, allow_pickle=False)
    _gate(opts, found.validation.silhouette, found.cluster_sizes, centroids, previous)
    log.info("artifact %s already exists for these inputs; reusing it", target.uri)
    return KMeansResult(found, target.uri, existing_manifest_sha256(target))
