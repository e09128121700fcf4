"""`knn-build` command line.

Two kinds (--kind): an HNSW index (the default) or a k-means model. Both load
sources the same way and publish through the same step (build/publish.py).

Exit codes (knn_contracts.artifact.BuildExit):

    0  built (or an identical artifact already existed)
    1  validation gate failed: for hnsw, recall below --min-recall at --ef-search (or,
       without --ef-search, at every efSearch of the measured curve); for kmeans,
       --min-silhouette, --min-cluster-fraction or --max-inertia-regression
    2  bad input or usage
    3  artifact or storage error (including an existing version built from other inputs)
    4  internal error: an unexpected exception (out of memory, a library failure, a bug);
       its traceback goes to the log, one line to stderr and the summary

Every failure writes a Failed summary line, so the operator always has a message.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, NoReturn, cast

from knn_contracts.artifact import BuildExit, BuildSummary, Metric

from ..cpus import available_cpus
from ..errors import ArtifactError, InputError
from .kmeans_gate import GateFailedError
from .kmeans_pipeline import MINI_BATCH_ABOVE, KMeansOptions, KMeansResult, run_kmeans_build
from .kmeans_select import compact_elbow, parse_range
from .pipeline import BuildOptions, RecallTooLowError, run_build
from .sources import FORMATS

log = logging.getLogger("knn-build")

TERMINATION_LOG = Path("/dev/termination-log")
# The kubelet keeps at most 4096 bytes of a termination message.
SUMMARY_LIMIT = 4000


def _positive(name: str, upper: int | None = None, lower: int = 1) -> type[int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if value < lower or (upper is not None and value > upper):
            rng = f"between {lower} and {upper}" if upper else f"at least {lower}"
            raise argparse.ArgumentTypeError(f"{name} must be {rng}, got {value}")
        return value

    parse.__name__ = name
    return cast(type[int], parse)


def _ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


# A version names a directory under --out and appears in Kubernetes object
# names and label values: one path segment, label-value characters only.
_VERSION_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?")


def _version_name(text: str) -> str:
    if not _VERSION_RE.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"invalid version {text!r}: use 1-63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return text


class UsageError(Exception):
    """A command line argparse refused; reported in one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse would print the whole usage block; a Job's log and its
        # termination message want one line that names the problem.
        raise UsageError(f"{message} (see knn-build --help)")


# HNSW-only flags and their defaults: None in argparse, so a k-means build can
# refuse one that was given instead of silently ignoring it.
HNSW_DEFAULTS: dict[str, object] = {"m": 16, "ef_construction": 200, "k": 10, "min_recall": 0.9}
HNSW_ONLY = ("ids", "id_column", "m", "ef_construction", "ef_search", "k", "min_recall")
KMEANS_ONLY = (
    "clusters",
    "clusters_range",
    "n_init",
    "max_iter",
    "mini_batch_above",
    "batch_size",
    "silhouette_sample",
    "min_silhouette",
    "min_cluster_fraction",
    "previous",
    "max_inertia_regression",
)


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _range(text: str) -> tuple[int, int]:
    try:
        return parse_range(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _nonnegative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not 0.0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {value}")
    return value


def _silhouette(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not -1.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between -1 and 1, got {value}")
    return value


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="knn-build",
        description="Build, validate and write a versioned artifact from source vectors: "
        "an HNSW index (--kind hnsw) or a k-means model (--kind kmeans).",
        epilog="Exit codes: 0 built, 1 validation gate (recall; silhouette, cluster sizes, "
        "inertia regression), 2 bad input, 3 storage error, 4 internal error.",
    )
    p.add_argument("--kind", choices=["hnsw", "kmeans"], default="hnsw")
    p.add_argument("--source", required=True, help="path, file://, pvc://, http(s):// or s3://")
    p.add_argument("--format", choices=FORMATS, help="default: from the file extension")
    p.add_argument("--ids", help="hnsw: ids file (.npy int64/str, .json list, or one per line)")
    p.add_argument("--column", help="parquet column holding the vectors")
    p.add_argument("--id-column", help="hnsw: parquet column holding the ids")
    p.add_argument("--dimension", type=_positive("--dimension", 65536), help="expected dimension")
    p.add_argument(
        "--metric",
        choices=["l2", "ip", "cosine"],
        help="required for hnsw; kmeans is l2 only (the default there)",
    )
    # hnswlib needs M >= 2 (and the manifest contract says so).
    p.add_argument("--m", type=_positive("--m", 128, lower=2), help="hnsw (default 16)")
    p.add_argument(
        "--ef-construction", type=_positive("--ef-construction", 4096), help="hnsw (default 200)"
    )
    p.add_argument(
        "--ef-search",
        type=_positive("--ef-search", 4096),
        help="hnsw: efSearch the recall gate checks and the server uses by default (default: "
        "the smallest efSearch of the measured curve that reaches --min-recall)",
    )
    p.add_argument(
        "--probe-queries",
        type=_positive("--probe-queries", 100_000),
        default=500,
        help="held-out probe rows (hnsw: queries; kmeans: probe points) (default 500)",
    )
    p.add_argument("--probe-source", help="probe vectors from this file instead of held-out rows")
    p.add_argument("--k", type=_positive("--k", 1000), help="hnsw: neighbours (default 10)")
    p.add_argument("--min-recall", type=_ratio, help="hnsw (default 0.9)")
    km = p.add_argument_group("kmeans (--kind kmeans)")
    which = km.add_mutually_exclusive_group()
    which.add_argument("--clusters", type=_positive("--clusters", 100_000, lower=2), help="k")
    which.add_argument(
        "--clusters-range",
        type=_range,
        metavar="MIN:MAX",
        help="try every k in MIN..MAX, keep the best silhouette",
    )
    km.add_argument(
        "--n-init", type=_positive("--n-init", 1000), help="k-means++ restarts per k (default 3)"
    )
    km.add_argument(
        "--max-iter", type=_positive("--max-iter", 100_000), help="iterations (default 300)"
    )
    km.add_argument(
        "--mini-batch-above",
        type=_positive("--mini-batch-above", lower=0),
        help=f"training rows above which MiniBatchKMeans runs (default {MINI_BATCH_ABOVE})",
    )
    km.add_argument(
        "--batch-size", type=_positive("--batch-size", 1 << 20), help="minibatch (default 4096)"
    )
    km.add_argument(
        "--silhouette-sample",
        type=_positive("--silhouette-sample", 100_000, lower=3),
        help="training rows the silhouette is computed on (default 5000; it costs rows^2)",
    )
    km.add_argument("--min-silhouette", type=_silhouette, help="gate (default: not gated)")
    km.add_argument(
        "--min-cluster-fraction",
        type=_nonnegative,
        help="gate: every cluster holds at least this fraction of an even share "
        "(training rows / k); empty clusters always fail (default 0.05)",
    )
    km.add_argument(
        "--previous", help="gate: the previous version's artifact, compared on its probe points"
    )
    km.add_argument(
        "--max-inertia-regression",
        type=_nonnegative,
        help="gate with --previous: largest relative growth of the mean squared distance on "
        "the previous version's probe points (default 0.1)",
    )
    p.add_argument("--threads", type=_positive("--threads", 1024), help="default: all usable CPUs")
    p.add_argument(
        "--version", type=_version_name, help="version name (default: derived from inputs)"
    )
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--summary-file",
        help=f"where to write the one-line JSON summary (default {TERMINATION_LOG} if present)",
    )
    p.add_argument("--out", required=True, help="directory (or s3://) where versions live")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def kind_conflict(args: argparse.Namespace) -> str | None:
    """The usage error of flags that do not belong to --kind, or None."""
    if args.kind == "kmeans":
        given = [_flag(d) for d in HNSW_ONLY if getattr(args, d) is not None]
        if given:
            return f"{', '.join(given)} not used by --kind kmeans"
        if args.metric not in (None, "l2"):
            return f"--kind kmeans supports --metric l2 only, got {args.metric}"
        if args.clusters is None and args.clusters_range is None:
            return "--kind kmeans needs --clusters K or --clusters-range MIN:MAX"
        if args.max_inertia_regression is not None and args.previous is None:
            return "--max-inertia-regression needs --previous"
        return None
    given = [_flag(d) for d in KMEANS_ONLY if getattr(args, d) is not None]
    if given:
        return f"{', '.join(given)} only used by --kind kmeans"
    if args.metric is None:
        return "the following arguments are required: --metric"
    return None


def _summary_path(given: str | None) -> Path | None:
    if given:
        return Path(given)
    if TERMINATION_LOG.exists() and os.access(TERMINATION_LOG, os.W_OK):
        return TERMINATION_LOG
    return None


def summary_line(summary: BuildSummary) -> str:
    """The summary as one JSON line of at most SUMMARY_LIMIT bytes (UTF-8), the
    message shortened with '…' if needed."""
    line = summary.model_dump_json(exclude_none=True)
    if len(line.encode()) <= SUMMARY_LIMIT:
        return line

    def shortened(n: int) -> str:
        cut = summary.model_copy(update={"message": summary.message[:n] + "…"})
        return cut.model_dump_json(exclude_none=True)

    # The longest prefix that fits, in bytes of JSON (escapes and UTF-8 included).
    lo, hi = 0, len(summary.message)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(shortened(mid).encode()) <= SUMMARY_LIMIT:
            lo = mid
        else:
            hi = mid - 1
    return shortened(lo)


def _write_summary(path: Path | None, summary: BuildSummary) -> None:
    line = summary_line(summary)
    print(line, flush=True)
    if path is not None:
        try:
            path.write_text(line + "\n", encoding="utf-8")
        except OSError as e:
            print(
                f"knn-build: warning: cannot write summary to {path}: {e.strerror}", file=sys.stderr
            )


def _usage_failure(argv: list[str] | None, message: str) -> int:
    print(f"knn-build: error: {message}", file=sys.stderr)
    # The rest of the command line may be unusable; take --summary-file if it parses.
    pre = _Parser(add_help=False)
    pre.add_argument("--summary-file")
    try:
        given = pre.parse_known_args(argv)[0].summary_file
    except UsageError:
        given = None
    _write_summary(_summary_path(given), BuildSummary(outcome="Failed", message=message))
    return BuildExit.BAD_INPUT


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except UsageError as e:
        return _usage_failure(argv, str(e))
    conflict = kind_conflict(args)
    if conflict is not None:
        return _usage_failure(argv, f"{conflict} (see knn-build --help)")
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s knn-build %(levelname)s %(message)s",
    )
    summary_path = _summary_path(args.summary_file)
    try:
        return _build(args, summary_path)
    except Exception as e:  # KeyboardInterrupt and SystemExit are not Exceptions: they pass
        return _internal_error(e, summary_path, args.version)


def _or(value: object, default: object) -> Any:
    return default if value is None else value


def _options(args: argparse.Namespace) -> BuildOptions:
    d = HNSW_DEFAULTS
    return BuildOptions(
        source=args.source,
        out=args.out,
        metric=cast(Metric, args.metric),
        m=_or(args.m, d["m"]),
        ef_construction=_or(args.ef_construction, d["ef_construction"]),
        ef_search=args.ef_search,
        probe_queries=args.probe_queries,
        k=_or(args.k, d["k"]),
        min_recall=_or(args.min_recall, d["min_recall"]),
        format=args.format,
        ids=args.ids,
        column=args.column,
        id_column=args.id_column,
        probe_source=args.probe_source,
        dimension=args.dimension,
        threads=args.threads or available_cpus(),
        version=args.version,
        seed=args.seed,
    )


def _kmeans_options(args: argparse.Namespace) -> KMeansOptions:
    lo, hi = args.clusters_range or (args.clusters, args.clusters)
    d = KMeansOptions
    return KMeansOptions(
        source=args.source,
        out=args.out,
        clusters_min=lo,
        clusters_max=hi,
        n_init=_or(args.n_init, d.n_init),
        max_iter=_or(args.max_iter, d.max_iter),
        seed=args.seed,
        mini_batch_above=_or(args.mini_batch_above, d.mini_batch_above),
        batch_size=_or(args.batch_size, d.batch_size),
        probe_points=args.probe_queries,
        probe_source=args.probe_source,
        silhouette_sample=_or(args.silhouette_sample, d.silhouette_sample),
        min_silhouette=args.min_silhouette,
        min_cluster_fraction=_or(args.min_cluster_fraction, d.min_cluster_fraction),
        max_inertia_regression=_or(args.max_inertia_regression, d.max_inertia_regression),
        previous=args.previous,
        format=args.format,
        column=args.column,
        dimension=args.dimension,
        threads=args.threads or available_cpus(),
        version=args.version,
    )


def _kmeans_summary(result: KMeansResult, seconds: float) -> BuildSummary:
    m = result.manifest
    v = m.validation
    return BuildSummary(
        outcome="Succeeded",
        kind="kmeans",
        version=m.version,
        vectors=m.count,
        dimension=m.dimension,
        clusters=m.parameters.clusters,
        inertia=float(f"{v.inertia:.6g}"),
        silhouette=round(v.silhouette, 6),
        elbow=compact_elbow(v.elbow, m.parameters.clusters),
        build_seconds=round(seconds, 3),
        artifact=result.artifact_uri,
        sha256=result.manifest_sha256,
    )


def _build(args: argparse.Namespace, summary_path: Path | None) -> int:
    start = time.perf_counter()
    code = BuildExit.BUILT
    try:
        if args.kind == "kmeans":
            kmeans = run_kmeans_build(_kmeans_options(args))
        else:
            result = run_build(_options(args))
    except InputError as e:
        message, code = str(e), BuildExit.BAD_INPUT
    except (RecallTooLowError, GateFailedError) as e:
        message, code = str(e), BuildExit.GATE_FAILED
    except ArtifactError as e:
        message, code = str(e), BuildExit.STORAGE_ERROR
    except OSError as e:
        message, code = f"storage error: {e}", BuildExit.STORAGE_ERROR
    if code:
        print(f"knn-build: error: {message}", file=sys.stderr)
        _write_summary(
            summary_path, BuildSummary(outcome="Failed", version=args.version, message=message)
        )
        return code
    if args.kind == "kmeans":
        _write_summary(summary_path, _kmeans_summary(kmeans, time.perf_counter() - start))
        return BuildExit.BUILT
    m = result.manifest
    _write_summary(
        summary_path,
        # No `kind` here: BuildSummary forbids unknown fields, so an operator older
        # than k-means would refuse an HNSW summary that carried one.
        BuildSummary(
            outcome="Succeeded",
            version=m.version,
            vectors=m.count,
            dimension=m.dimension,
            recall=round(result.recall, 6),
            ef_search=result.ef_search,
            curve=[(c.ef_search, c.recall, c.latency_us) for c in m.validation.curve],
            build_seconds=round(time.perf_counter() - start, 3),
            artifact=result.artifact_uri,
            sha256=result.manifest_sha256,
        ),
    )
    return BuildExit.BUILT


def _internal_error(error: Exception, summary_path: Path | None, version: str | None) -> int:
    """Report an exception nothing expected: the traceback for whoever debugs it, one
    line for the Job's status, and an exit code no expected failure uses."""
    log.error("internal error", exc_info=error)
    # One line: the termination message and `kubectl describe` show it whole.
    text = " ".join(str(error).split())
    message = f"internal error: {type(error).__name__}" + (f": {text}" if text else "")
    print(f"knn-build: {message}", file=sys.stderr)
    _write_summary(summary_path, BuildSummary(outcome="Failed", version=version, message=message))
    return BuildExit.INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
