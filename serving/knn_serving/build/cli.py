"""`knn-build` command line.

Exit codes (knn_contracts.artifact.BuildExit):

    0  built (or an identical artifact already existed)
    1  recall gate failed: recall below --min-recall at --ef-search (or, without
       --ef-search, at every efSearch of the measured curve)
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
from typing import NoReturn, cast

from knn_contracts.artifact import BuildExit, BuildSummary, Metric

from ..cpus import available_cpus
from ..errors import ArtifactError, InputError
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


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="knn-build",
        description="Build, validate and write a versioned HNSW artifact from source vectors.",
        epilog="Exit codes: 0 built, 1 recall below --min-recall, 2 bad input, 3 storage error, "
        "4 internal error.",
    )
    p.add_argument("--source", required=True, help="path, file://, pvc://, http(s):// or s3://")
    p.add_argument("--format", choices=FORMATS, help="default: from the file extension")
    p.add_argument("--ids", help="ids file (.npy int64/str, .json list, or one per line)")
    p.add_argument("--column", help="parquet column holding the vectors")
    p.add_argument("--id-column", help="parquet column holding the ids")
    p.add_argument("--dimension", type=_positive("--dimension", 65536), help="expected dimension")
    p.add_argument("--metric", required=True, choices=["l2", "ip", "cosine"])
    # hnswlib needs M >= 2 (and the manifest contract says so).
    p.add_argument("--m", type=_positive("--m", 128, lower=2), default=16)
    p.add_argument("--ef-construction", type=_positive("--ef-construction", 4096), default=200)
    p.add_argument(
        "--ef-search",
        type=_positive("--ef-search", 4096),
        help="efSearch the recall gate checks and the server uses by default (default: the "
        "smallest efSearch of the measured curve that reaches --min-recall)",
    )
    p.add_argument("--probe-queries", type=_positive("--probe-queries", 100_000), default=500)
    p.add_argument("--probe-source", help="probe queries from this file instead of held-out rows")
    p.add_argument("--k", type=_positive("--k", 1000), default=10)
    p.add_argument("--min-recall", type=_ratio, default=0.9)
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


def _options(args: argparse.Namespace) -> BuildOptions:
    return BuildOptions(
        source=args.source,
        out=args.out,
        metric=cast(Metric, args.metric),
        m=args.m,
        ef_construction=args.ef_construction,
        ef_search=args.ef_search,
        probe_queries=args.probe_queries,
        k=args.k,
        min_recall=args.min_recall,
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


def _build(args: argparse.Namespace, summary_path: Path | None) -> int:
    start = time.perf_counter()
    code = BuildExit.BUILT
    try:
        result = run_build(_options(args))
    except InputError as e:
        message, code = str(e), BuildExit.BAD_INPUT
    except RecallTooLowError as e:
        message, code = str(e), BuildExit.RECALL_TOO_LOW
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
    m = result.manifest
    _write_summary(
        summary_path,
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
