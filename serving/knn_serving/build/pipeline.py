"""The build: load → check → build HNSW → validate recall → write artifact.

Probe rows are held out of the graph and kept in the artifact's exact side list
(artifact format 2), so validation searches them as new queries are searched.
Each step is timed; the result is a BuildSummary the CLI prints and writes
to the termination message that the operator reads.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import hnswlib
import numpy as np
import numpy.typing as npt
from knn_contracts.artifact import (
    FORMAT_VERSION,
    IDS_FILE,
    INDEX_FILE,
    PROBES_FILE,
    HnswParameters,
    Manifest,
    Metric,
    SourceInfo,
    Validation,
)
from knn_contracts.identity import BuildInputs, version_of

from .. import artifact
from ..errors import ArtifactError, InputError
from ..exact import exact_topk
from ..sidelist import SideList
from .progress import Progress
from .publish import Target, existing, existing_manifest_sha256, publish, source_digest
from .sources import Source, Vectors, check_finite, load_source
from .validate import RecallTooLowError, ef_ladder, gate, measure_curve

log = logging.getLogger("knn-build")

HNSW_SPACE: dict[Metric, str] = {"l2": "l2", "ip": "ip", "cosine": "cosine"}


__all__ = ["BuildOptions", "BuildResult", "RecallTooLowError", "run_build"]


@dataclass(frozen=True)
class BuildOptions:
    source: str
    out: str
    metric: Metric
    m: int = 16
    ef_construction: int = 200
    # The efSearch the gate checks and the artifact serves at by default; None:
    # the smallest efSearch of the curve that reaches min_recall.
    ef_search: int | None = None
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
    # The gate's efSearch and its recall (an artifact reused for another
    # efSearch keeps its manifest's own default).
    ef_search: int
    recall: float


def build_inputs(
    opts: BuildOptions, source_sha: str | None, ids_sha: str | None, probe_sha: str | None
) -> BuildInputs:
    return BuildInputs(
        source_uri=opts.source,
        source_format=opts.format,
        dimension=opts.dimension,
        ids=opts.ids,
        column=opts.column,
        id_column=opts.id_column,
        metric=opts.metric,
        m=opts.m,
        ef_construction=opts.ef_construction,
        probe_queries=opts.probe_queries,
        probe_source=opts.probe_source,
        k=opts.k,
        min_recall=opts.min_recall,
        seed=None if opts.probe_source else opts.seed,
        source_sha256=source_sha,
        ids_sha256=ids_sha,
        probe_source_sha256=probe_sha,
    )


def default_version(
    source_sha: str, ids_sha: str | None, opts: BuildOptions, probe_sha: str | None = None
) -> str:
    """The shared build identity with the content digests: efSearch is not part
    of it, so raising it after a failed gate reuses (or retries) the same version."""
    return version_of(build_inputs(opts, source_sha, ids_sha, probe_sha))


def _ids_digest_text(source: SourceInfo) -> str:
    if source.ids_sha256 is not None:
        return source.ids_sha256[:12]
    return "none" if source.ids_uri is None else "unrecorded"


def _input_differences(
    previous: Manifest,
    inputs: SourceInfo,
    opts: BuildOptions,
    params: HnswParameters,
    probe_sha: str | None,
) -> list[str]:
    """The recorded inputs of an existing artifact that differ from this build's.

    A digest an older manifest did not record counts as different: the artifact
    cannot be shown to come from these inputs.
    """
    old = previous.source
    v = previous.validation
    graph = (previous.parameters.m, previous.parameters.ef_construction)
    pairs: list[tuple[str, object, object]] = [
        ("artifact format", previous.format_version, FORMAT_VERSION),
        ("source sha256", old.sha256[:12], inputs.sha256[:12]),
        ("format", old.format, inputs.format),
        ("column", old.column, inputs.column),
        ("id column", old.id_column, inputs.id_column),
        ("ids", old.ids_uri, inputs.ids_uri),
        ("ids sha256", _ids_digest_text(old), _ids_digest_text(inputs)),
        ("metric", previous.metric, opts.metric),
        ("m, efConstruction", graph, (params.m, params.ef_construction)),
        ("k", v.k, opts.k),
        ("min recall", v.min_recall, opts.min_recall),
        ("probe queries", v.probe_queries, opts.probe_queries),
        ("probe source", v.probe_source, opts.probe_source),
        ("probe source sha256", v.probe_source_sha256, probe_sha),
        ("seed", v.seed, None if opts.probe_source else opts.seed),
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
    if from_data and opts.probe_queries > src.count - opts.k:
        raise InputError(
            f"--probe-queries {opts.probe_queries} held-out rows would leave "
            f"{max(0, src.count - opts.probe_queries)} of the {src.count} vectors in the graph; "
            f"at least --k {opts.k} must stay"
        )
    if opts.ef_search is not None and opts.ef_search < opts.k:
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
    # Probes are real rows held out of the graph: they are served from the exact
    # side list (nothing is lost), and each probe's own row is excluded from both
    # its exact top-k and the answer, so it is searched as a new query is.
    rng = np.random.default_rng(opts.seed)
    rows = np.sort(rng.choice(src.count, size=opts.probe_queries, replace=False)).astype(np.int64)
    return np.ascontiguousarray(src.vectors[rows], dtype=np.float32), rows


def _add_all(
    index: hnswlib.Index,
    vectors: Vectors,
    threads: int,
    chunk: int | None,
    held_out: npt.NDArray[np.int64],
) -> float:
    """Add every row but the held-out ones (sorted), labelled by row position."""
    n = vectors.shape[0]
    step = chunk or max(10_000, n // 50)
    progress = Progress(n - held_out.shape[0], log)
    start = time.perf_counter()
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        block = np.asarray(vectors[lo:hi], dtype=np.float32)
        labels = np.arange(lo, hi, dtype=np.int64)
        skip = held_out[(held_out >= lo) & (held_out < hi)]
        if skip.size:
            keep = np.ones(hi - lo, dtype=bool)
            keep[skip - lo] = False
            block, labels = block[keep], labels[keep]
        if labels.size:
            index.add_items(block, labels, num_threads=threads)
        progress.advance(int(labels.size))
    return time.perf_counter() - start


def _reuse(
    previous: Manifest,
    target: Target,
    opts: BuildOptions,
    inputs: SourceInfo,
    params: HnswParameters,
    probe_sha: str | None,
) -> BuildResult:
    """A retried Job (or the same inputs at another efSearch) finds a finished
    artifact: gate the requested efSearch on its recorded curve, do not rebuild."""
    differences = _input_differences(previous, inputs, opts, params, probe_sha)
    if differences:
        raise ArtifactError(
            f"{target.uri}: already exists with other inputs ({'; '.join(differences)}); "
            "artifacts are immutable, choose another --version"
        )
    v = previous.validation
    ef, recall = gate(
        v.curve, opts.ef_search or previous.parameters.ef_search, opts.min_recall, v.probe_queries
    )
    log.info("artifact %s already exists for these inputs; reusing it", target.uri)
    return BuildResult(previous, target.uri, existing_manifest_sha256(target), ef, recall)


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
    source_sha = source_digest(opts.source)
    ids_sha = source_digest(opts.ids) if opts.ids is not None else None
    probe_sha = source_digest(opts.probe_source) if opts.probe_source is not None else None
    version = opts.version or default_version(source_sha, ids_sha, opts, probe_sha)
    target = Target(opts.out, version)
    inputs = SourceInfo(
        uri=opts.source,
        format=src.format,
        sha256=source_sha,
        ids_uri=opts.ids,
        ids_sha256=ids_sha,
        column=opts.column,
        id_column=opts.id_column,
    )
    graph_params = HnswParameters(
        m=opts.m, ef_construction=opts.ef_construction, ef_search=opts.ef_search or opts.k
    )

    previous = existing(target)
    if previous is not None:
        artifact.refuse_other_kind(target.uri, previous, "hnsw")
        assert isinstance(previous, Manifest)
        return _reuse(previous, target, opts, inputs, graph_params, probe_sha)

    probes, side = _probe_set(opts, src)
    index = _build_graph(opts, src, side)
    ladder = ef_ladder(opts.k, opts.ef_search)
    log.info(
        "measuring recall@%d of %d probe queries at efSearch %s",
        opts.k,
        len(probes.queries),
        ladder,
    )
    curve = measure_curve(index, side, probes, ladder, opts.ef_search, opts.threads)
    for point in curve:
        log.info(
            "efSearch %4d: recall@%d %.4f, %.0f µs/query (1 thread)",
            point.ef_search,
            opts.k,
            point.recall,
            point.latency_us,
        )
    ef, recall = gate(curve, opts.ef_search, opts.min_recall, len(probes.queries))
    log.info("gate: recall@%d %.4f at efSearch %d (min %.4f)", opts.k, recall, ef, opts.min_recall)
    index.set_ef(ef)

    ids = src.ids if src.ids is not None else np.arange(src.count, dtype=np.int64)

    def write_files(stage: Path) -> None:
        index.save_index(str(stage / INDEX_FILE))
        with (stage / IDS_FILE).open("wb") as f:
            np.save(f, ids, allow_pickle=False)
        probes.save(stage / PROBES_FILE)

    def make_manifest(files: dict[str, str]) -> Manifest:
        return Manifest(
            kind="hnsw",
            version=version,
            dimension=src.dimension,
            metric=opts.metric,
            count=src.count,
            id_type="int" if ids.dtype.kind == "i" else "str",
            parameters=graph_params.model_copy(update={"ef_search": ef}),
            source=inputs,
            validation=Validation(
                probe_queries=int(probes.queries.shape[0]),
                k=opts.k,
                recall=recall,
                min_recall=opts.min_recall,
                held_out=opts.probe_source is None,
                method="held-out" if opts.probe_source is None else "probe-source",
                held_out_rows=len(side),
                probe_source=opts.probe_source,
                probe_source_sha256=probe_sha,
                seed=None if opts.probe_source else opts.seed,
                curve=curve,
            ),
            build_seconds=round(time.perf_counter() - t0, 3),
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            files=files,
        )

    manifest, manifest_sha = publish(target, write_files, make_manifest)
    log.info(
        "wrote %s (%d vectors, %d of them in the exact side list, total %.1fs)",
        target.uri,
        src.count,
        len(side),
        manifest.build_seconds,
    )
    return BuildResult(manifest, target.uri, manifest_sha, ef, recall)


def _probe_set(opts: BuildOptions, src: Source) -> tuple[artifact.Probes, SideList]:
    """Probe queries with their exact top-k over every row, and the side list of
    held-out rows (empty for user-given probes)."""
    queries, self_labels = _probes(opts, src)
    held_out = self_labels[self_labels >= 0]
    log.info("computing exact top-%d for %d probe queries", opts.k, queries.shape[0])
    truth = exact_topk(
        src.vectors,
        queries,
        opts.k,
        opts.metric,
        exclude=self_labels if held_out.size else None,
    )
    side = SideList.build(queries[self_labels >= 0], held_out, opts.metric)
    return artifact.Probes(queries, truth, self_labels), side


def _build_graph(opts: BuildOptions, src: Source, side: SideList) -> hnswlib.Index:
    index = hnswlib.Index(space=HNSW_SPACE[opts.metric], dim=src.dimension)
    # Room for every row: the held-out ones can be inserted later (upserts).
    index.init_index(
        max_elements=src.count,
        ef_construction=opts.ef_construction,
        M=opts.m,
        random_seed=opts.seed,
    )
    log.info(
        "building HNSW (m=%d, efConstruction=%d) of %d vectors on %d threads "
        "(%d held-out probe rows go to the exact side list)",
        opts.m,
        opts.ef_construction,
        src.count - len(side),
        opts.threads,
        len(side),
    )
    add_seconds = _add_all(index, src.vectors, opts.threads, opts.chunk, side.labels)
    added = src.count - len(side)
    log.info("add_items %.1fs, %.0f vectors/s", add_seconds, added / max(add_seconds, 1e-9))
    return index
