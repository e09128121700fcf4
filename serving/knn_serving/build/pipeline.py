"""The build: load → check → build HNSW → validate recall → write artifact.

Each step is timed; the result is a BuildSummary the CLI prints and writes
to the termination message that the operator reads.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import hnswlib
import numpy as np
import numpy.typing as npt
from knn_contracts.artifact import (
    IDS_FILE,
    INDEX_FILE,
    PROBES_FILE,
    HnswParameters,
    Manifest,
    Metric,
    SourceInfo,
    Validation,
)

from .. import artifact
from ..errors import ArtifactError, InputError
from ..exact import drop_self, exact_topk, recall_at_k
from ..uris import join, resolve
from .progress import Progress
from .sources import Source, Vectors, check_finite, load_source

log = logging.getLogger("knn-build")

HNSW_SPACE: dict[Metric, str] = {"l2": "l2", "ip": "ip", "cosine": "cosine"}


class RecallTooLowError(Exception):
    def __init__(self, recall: float, minimum: float, k: int, probes: int) -> None:
        super().__init__(
            f"recall@{k} {recall:.4f} on {probes} probe queries is below --min-recall {minimum}; "
            "raise --ef-search, --m or --ef-construction"
        )
        self.recall = recall


@dataclass(frozen=True)
class BuildOptions:
    source: str
    out: str
    metric: Metric
    m: int = 16
    ef_construction: int = 200
    ef_search: int = 64
    probe_queries: int = 500
    k: int = 10
    min_recall: float = 0.9
    format: str | None = None
    ids: str | None = None
    column: str | None = None
    id_column: str | None = None
    probe_source: str | None = None
    dimension: int | None = None
    threads: int = 1
    version: str | None = None
    seed: int = 42
    chunk: int | None = None


@dataclass(frozen=True)
class BuildResult:
    manifest: Manifest
    artifact_uri: str
    manifest_sha256: str


def _source_digest(uri: str) -> str:
    """sha256 of the source bytes, read in chunks, so a version names its input."""
    loc = resolve(uri)
    if loc.local is not None:
        return artifact.sha256_file(loc.local)
    import fsspec

    digest = hashlib.sha256()
    with fsspec.open(uri, "rb") as f:
        while chunk := f.read(4 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def default_version(source_sha: str, ids_sha: str | None, opts: BuildOptions) -> str:
    # Everything `_input_differences` compares (and what selects the vectors),
    # so a changed input never lands on an existing default version.
    inputs: list[object] = [
        source_sha,
        opts.metric,
        opts.m,
        opts.ef_construction,
        opts.ef_search,
        opts.k,
        opts.min_recall,
        opts.format,
        opts.ids,
        opts.column,
        opts.id_column,
    ]
    if ids_sha is not None:
        # Appended only when there is an ids file, so builds without one keep
        # the versions they had before the ids digest was part of the key.
        inputs.append(ids_sha)
    key = json.dumps(inputs, sort_keys=True)
    return "v" + hashlib.sha256(key.encode()).hexdigest()[:10]


def _ids_digest_text(source: SourceInfo) -> str:
    if source.ids_sha256 is not None:
        return source.ids_sha256[:12]
    return "none" if source.ids_uri is None else "unrecorded"


def _input_differences(
    previous: Manifest,
    inputs: SourceInfo,
    opts: BuildOptions,
    params: HnswParameters,
) -> list[str]:
    """The recorded inputs of an existing artifact that differ from this build's.

    A digest an older manifest did not record counts as different: the artifact
    cannot be shown to come from these inputs.
    """
    old = previous.source
    pairs: list[tuple[str, object, object]] = [
        ("source sha256", old.sha256[:12], inputs.sha256[:12]),
        ("format", old.format, inputs.format),
        ("column", old.column, inputs.column),
        ("id column", old.id_column, inputs.id_column),
        ("ids", old.ids_uri, inputs.ids_uri),
        ("ids sha256", _ids_digest_text(old), _ids_digest_text(inputs)),
        ("metric", previous.metric, opts.metric),
        ("hnsw parameters", previous.parameters, params),
        ("k", previous.validation.k, opts.k),
        ("min recall", previous.validation.min_recall, opts.min_recall),
    ]
    return [f"{name} {before} != {now}" for name, before, now in pairs if before != now]


def _check_options(opts: BuildOptions, src: Source) -> None:
    if opts.dimension is not None and opts.dimension != src.dimension:
        raise InputError(
            f"{opts.source}: vectors have dimension {src.dimension}, expected {opts.dimension}"
        )
    from_data = opts.probe_source is None
    usable = src.count - (1 if from_data else 0)
    if opts.k > usable:
        raise InputError(
            f"--k {opts.k} is larger than the {src.count} vectors in {opts.source}"
            + (" (one is held out per probe query)" if from_data and opts.k == src.count else "")
        )
    if from_data and opts.probe_queries > src.count:
        raise InputError(
            f"--probe-queries {opts.probe_queries} is larger than the {src.count} vectors"
        )
    if opts.ef_search < opts.k:
        raise InputError(f"--ef-search {opts.ef_search} must be at least --k {opts.k}")


def _probes(
    opts: BuildOptions, src: Source
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    if opts.probe_source is not None:
        ps = load_source(opts.probe_source, None)
        if ps.dimension != src.dimension:
            raise InputError(
                f"{opts.probe_source}: probe vectors have dimension {ps.dimension}, "
                f"source has {src.dimension}"
            )
        check_finite(ps.vectors, opts.probe_source, need_nonzero=opts.metric == "cosine")
        q = np.asarray(ps.vectors[: opts.probe_queries], dtype=np.float32)
        return np.ascontiguousarray(q), np.full(q.shape[0], -1, dtype=np.int64)
    # Probes are real rows, held out by leave-one-out: the index keeps every
    # vector (nothing is lost), and each probe's own row is excluded from both
    # its exact top-k and the index's answer.
    rng = np.random.default_rng(opts.seed)
    rows = np.sort(rng.choice(src.count, size=opts.probe_queries, replace=False)).astype(np.int64)
    return np.ascontiguousarray(src.vectors[rows], dtype=np.float32), rows


def _add_all(index: hnswlib.Index, vectors: Vectors, threads: int, chunk: int | None) -> float:
    n = vectors.shape[0]
    step = chunk or max(10_000, n // 50)
    progress = Progress(n, log)
    start = time.perf_counter()
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        index.add_items(
            np.asarray(vectors[lo:hi], dtype=np.float32),
            np.arange(lo, hi, dtype=np.int64),
            num_threads=threads,
        )
        progress.advance(hi - lo)
    return time.perf_counter() - start


def query_index(
    index: hnswlib.Index,
    queries: npt.NDArray[np.float32],
    k: int,
    self_labels: npt.NDArray[np.int64],
    threads: int,
) -> npt.NDArray[np.int64]:
    """Top-k labels from the index, with each query's own row dropped if present."""
    extra = 1 if (self_labels >= 0).any() else 0
    labels, _ = index.knn_query(queries, k=k + extra, num_threads=threads)
    labels = np.asarray(labels, dtype=np.int64)
    return drop_self(labels, self_labels, k) if extra else labels


def _existing(final_uri: str) -> Manifest | None:
    loc = resolve(final_uri)
    if loc.local is not None:
        return artifact.verify(loc.local) if loc.local.exists() else None
    import fsspec

    fs, _, (root,) = fsspec.get_fs_token_paths(final_uri)
    if not fs.exists(join(root, "manifest.json")):
        return None
    return artifact.read_remote_manifest(fs, root)


def run_build(opts: BuildOptions) -> BuildResult:
    t0 = time.perf_counter()
    src = load_source(
        opts.source, opts.format, ids_uri=opts.ids, column=opts.column, id_column=opts.id_column
    )
    log.info(
        "source %s: %d vectors of dimension %d (%s)",
        opts.source,
        src.count,
        src.dimension,
        src.format,
    )
    _check_options(opts, src)
    check_finite(src.vectors, opts.source, need_nonzero=opts.metric == "cosine")
    source_sha = _source_digest(opts.source)
    ids_sha = _source_digest(opts.ids) if opts.ids is not None else None
    version = opts.version or default_version(source_sha, ids_sha, opts)
    final_uri = join(opts.out, version)
    params = HnswParameters(
        m=opts.m, ef_construction=opts.ef_construction, ef_search=opts.ef_search
    )
    inputs = SourceInfo(
        uri=opts.source,
        format=src.format,
        sha256=source_sha,
        ids_uri=opts.ids,
        ids_sha256=ids_sha,
        column=opts.column,
        id_column=opts.id_column,
    )

    out = resolve(opts.out)
    if out.local is not None:
        # A build killed while writing (SIGKILL, OOM) leaves its staging directory.
        # Remote outputs stage under the pod's own temporary directory instead.
        artifact.remove_stale_staging(out.local, version)
    previous = _existing(final_uri)
    if previous is not None:
        # A retried Job finds its own finished artifact: succeed without rebuilding.
        differences = _input_differences(previous, inputs, opts, params)
        if not differences:
            log.info("artifact %s already exists for these inputs; reusing it", final_uri)
            loc = resolve(final_uri)
            sha = artifact.sha256_file(loc.local / "manifest.json") if loc.local is not None else ""
            return BuildResult(previous, final_uri, sha)
        raise ArtifactError(
            f"{final_uri}: already exists with other inputs ({'; '.join(differences)}); "
            "artifacts are immutable, choose another --version"
        )

    queries, self_labels = _probes(opts, src)
    log.info("computing exact top-%d for %d probe queries", opts.k, queries.shape[0])
    truth = exact_topk(
        src.vectors,
        queries,
        opts.k,
        opts.metric,
        exclude=self_labels if (self_labels >= 0).any() else None,
    )

    index = hnswlib.Index(space=HNSW_SPACE[opts.metric], dim=src.dimension)
    index.init_index(
        max_elements=src.count,
        ef_construction=opts.ef_construction,
        M=opts.m,
        random_seed=opts.seed,
    )
    log.info(
        "building HNSW (m=%d, efConstruction=%d) on %d threads",
        opts.m,
        opts.ef_construction,
        opts.threads,
    )
    add_seconds = _add_all(index, src.vectors, opts.threads, opts.chunk)
    index.set_ef(opts.ef_search)
    found = query_index(index, queries, opts.k, self_labels, opts.threads)
    recall = recall_at_k(found, truth)
    log.info(
        "recall@%d = %.4f on %d probe queries (min %.4f)",
        opts.k,
        recall,
        len(queries),
        opts.min_recall,
    )
    if recall < opts.min_recall:
        raise RecallTooLowError(recall, opts.min_recall, opts.k, len(queries))

    ids = src.ids if src.ids is not None else np.arange(src.count, dtype=np.int64)
    stage_parent = out.local if out.local is not None else Path(tempfile.gettempdir())
    with artifact.staging_dir(stage_parent, version) as stage:
        index.save_index(str(stage / INDEX_FILE))
        with (stage / IDS_FILE).open("wb") as f:
            np.save(f, ids, allow_pickle=False)
        artifact.Probes(queries, truth, self_labels).save(stage / PROBES_FILE)
        manifest = Manifest(
            kind="hnsw",
            version=version,
            dimension=src.dimension,
            metric=opts.metric,
            count=src.count,
            id_type="int" if ids.dtype.kind == "i" else "str",
            parameters=params,
            source=inputs,
            validation=Validation(
                probe_queries=int(queries.shape[0]),
                k=opts.k,
                recall=recall,
                min_recall=opts.min_recall,
                held_out=opts.probe_source is None,
            ),
            build_seconds=round(time.perf_counter() - t0, 3),
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            files=artifact.file_digests(stage),
        )
        manifest_sha = artifact.write_manifest(stage, manifest)
        if out.local is not None:
            artifact.publish_local(stage, out.local / version)
        else:
            artifact.publish_remote(stage, final_uri)
    log.info(
        "wrote %s (%d vectors, add_items %.1fs, %.0f vectors/s, total %.1fs)",
        final_uri,
        src.count,
        add_seconds,
        src.count / max(add_seconds, 1e-9),
        manifest.build_seconds,
    )
    return BuildResult(manifest, final_uri, manifest_sha)
