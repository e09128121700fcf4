"""`knn-serve` command line.

With `--workers N > 1` the artifact is loaded once, by uvicorn's supervisor, which
then forks its N workers: they share the index's pages (hnswlib never writes to
them while searching, and the heap is frozen out of the collector's reach before
the fork, so reference counting does not copy them either). Metrics are then
aggregated through prometheus_client's multiprocess mode, in
$PROMETHEUS_MULTIPROC_DIR if set (left as it is), else in a temporary directory
that is removed when the server exits.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import prometheus_client
import prometheus_client.values as prometheus_values
import uvicorn
import uvicorn._subprocess
from fastapi import FastAPI
from knn_contracts.metrics import LABEL_MODEL

from ..artifact_cli import verify
from ..cpus import available_cpus
from ..errors import ArtifactError, InputError
from . import loading
from .app import Settings, create_app
from .live import LiveSettings
from .metrics import MULTIPROC_ENV, Identity

SETTINGS_ENV = "KNN_SERVE_SETTINGS"
LOG_LEVEL_ENV = "KNN_SERVE_LOG_LEVEL"

log = logging.getLogger("knn-serve")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="knn-serve", description="Serve a knn-build artifact over HTTP."
    )
    p.add_argument(
        "--artifact",
        required=True,
        help="one version's artifact: a directory, file://, pvc://CLAIM/path or s3://",
    )
    p.add_argument(
        "--ef-search",
        type=int,
        default=None,
        help="search breadth (default: the artifact's); the recall gauge measures this value",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "knn-artifacts",
        help="where remote (s3://, http) artifacts are downloaded",
    )
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes; they share one copy of the index (loaded before they fork)",
    )
    p.add_argument(
        "--probe-interval",
        type=float,
        default=60.0,
        help="seconds between probe-set replays that update knn_recall_ratio",
    )
    p.add_argument(
        "--index-name",
        default=None,
        help="'index' label on every metric (env KNN_INDEX_NAME; default 'default'); "
        "the artifact must be an HNSW index",
    )
    p.add_argument(
        "--model-name",
        default=os.environ.get("KNN_MODEL_NAME") or None,
        help="serve a k-means model (kind kmeans) under this 'model' label instead of an "
        "index (env KNN_MODEL_NAME); /v1/assign replaces /v1/query",
    )
    p.add_argument(
        "--drift-window",
        type=int,
        default=10_000,
        help="the sliding window of drift gauges: assignments for knn_cluster_drift_psi and "
        "knn_cluster_distance_ratio (k-means), queries for knn_query_distance_ratio (index) "
        "(default %(default)s)",
    )
    p.add_argument(
        "--revision",
        default=os.environ.get("KNN_REVISION", ""),
        help="the operator's revision id (<version>-<digest>): the 'version' label on "
        "every metric, so two revisions of one artifact are told apart (env "
        "KNN_REVISION; default: the artifact's version)",
    )
    p.add_argument(
        "--namespace",
        default=os.environ.get("KNN_NAMESPACE", "default"),
        help="'namespace' label on every metric (env KNN_NAMESPACE)",
    )
    p.add_argument(
        "--batch-threads",
        type=int,
        default=0,
        help="hnswlib threads per batch query (default: usable CPUs / workers)",
    )
    p.add_argument("--max-batch", type=int, default=1024)
    p.add_argument("--max-body-bytes", type=int, default=16 << 20)
    p.add_argument("--max-k", type=int, default=1000)
    p.add_argument("--max-ef", type=int, default=4096)
    p.add_argument(
        "--drain-seconds",
        type=int,
        default=25,
        help="on SIGTERM, wait this long for in-flight requests",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="verify the artifact's checksums and exit (0 ok, 3 refused)",
    )
    p.add_argument(
        "--live-recall-rate",
        type=float,
        default=LiveSettings.rate,
        help="fraction of queried vectors whose answer is checked by exact search in the "
        "background (0 turns live recall off; default %(default)s)",
    )
    p.add_argument(
        "--live-recall-cpu",
        type=float,
        default=LiveSettings.cpu_budget,
        help="fraction of one core the live-recall check may use, per worker (default %(default)s)",
    )
    p.add_argument(
        "--live-recall-queue",
        type=int,
        default=LiveSettings.queue_size,
        help="sampled queries waiting for their check; more are dropped and counted "
        "(default %(default)s)",
    )
    p.add_argument(
        "--http",
        default="direct",
        choices=["uvicorn", "direct"],
        help="HTTP front: direct (uvicorn's protocol answers POST /v1/query and /v1/assign "
        "itself, every other route goes to the ASGI app: the same answers for 0.88x the CPU "
        "per query, docs/benchmarks.md) or uvicorn (every route through the ASGI app); "
        "default %(default)s",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def _live(args: argparse.Namespace) -> LiveSettings:
    if not 0.0 <= args.live_recall_rate <= 1.0:
        raise SystemExit("knn-serve: error: --live-recall-rate must be between 0 and 1")
    if not 0.0 < args.live_recall_cpu <= 1.0:
        raise SystemExit("knn-serve: error: --live-recall-cpu must be above 0 and at most 1")
    if args.live_recall_queue < 1:
        raise SystemExit("knn-serve: error: --live-recall-queue must be at least 1")
    return LiveSettings(args.live_recall_rate, args.live_recall_cpu, args.live_recall_queue)


def _settings(args: argparse.Namespace) -> Settings:
    for name in ("workers", "max_batch", "max_body_bytes", "max_k", "max_ef"):
        if getattr(args, name) < 1:
            raise SystemExit(f"knn-serve: error: --{name.replace('_', '-')} must be at least 1")
    if args.ef_search is not None and not 1 <= args.ef_search <= args.max_ef:
        raise SystemExit(f"knn-serve: error: --ef-search must be between 1 and {args.max_ef}")
    if args.probe_interval <= 0:
        raise SystemExit("knn-serve: error: --probe-interval must be positive")
    threads = args.batch_threads or max(1, available_cpus() // args.workers)
    if args.drift_window < 1:
        raise SystemExit("knn-serve: error: --drift-window must be at least 1")
    return Settings(
        artifact=args.artifact,
        identity=_identity(args),
        drift_window=args.drift_window,
        probe_interval=args.probe_interval,
        batch_threads=threads,
        max_batch=args.max_batch,
        max_body_bytes=args.max_body_bytes,
        max_k=args.max_k,
        max_ef=args.max_ef,
        ef_search=args.ef_search,
        cache_dir=args.cache_dir,
        live=_live(args),
    )


def _identity(args: argparse.Namespace) -> Identity:
    """`index` label for an HNSW index, `model` for a k-means model (--model-name)."""
    if args.model_name is not None:
        if args.index_name is not None:
            raise SystemExit(
                "knn-serve: error: give --index-name (an HNSW index) or --model-name "
                "(a k-means model), not both"
            )
        return Identity(args.model_name, args.namespace, revision=args.revision, label=LABEL_MODEL)
    name = args.index_name or os.environ.get("KNN_INDEX_NAME") or "default"
    return Identity(name, args.namespace, revision=args.revision)


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s knn-serve %(levelname)s %(message)s",
    )


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


# The artifact the supervisor loaded before forking its workers (--workers N > 1).
_preloaded: loading.Loaded | str | None = None


def app_from_env() -> FastAPI:
    """uvicorn factory for worker processes: settings travel in the environment,
    the artifact in the memory the worker was forked with."""
    _configure_logging(os.environ.get(LOG_LEVEL_ENV, "info"))
    # A forked worker has prometheus_client as the supervisor imported it, before
    # $PROMETHEUS_MULTIPROC_DIR was set: its metrics must write to that directory.
    prometheus_values.ValueClass = prometheus_values.get_value_class()  # type: ignore[no-untyped-call]
    raw = json.loads(os.environ[SETTINGS_ENV])
    raw["cache_dir"] = Path(raw["cache_dir"])
    raw["identity"] = Identity(**raw["identity"])
    raw["live"] = LiveSettings(**raw["live"])
    return create_app(Settings(**raw), preloaded=_preloaded)


def _preload(settings: Settings) -> None:
    """Load the artifact in the supervisor and make uvicorn fork its workers (it
    spawns them by default, and each would load its own copy). uvicorn's
    `_subprocess.spawn` is the context its supervisor starts workers from; the pin
    in constraints.txt holds it, and tests/dataplane/test_serve_workers.py measures
    that the workers share the index."""
    global _preloaded
    _preloaded = loading.load(
        settings.artifact, settings.cache_dir, settings.identity, settings.ef_search
    )
    gc.collect()
    gc.freeze()
    uvicorn._subprocess.spawn = multiprocessing.get_context("fork")  # type: ignore[assignment]


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    _configure_logging(args.log_level)
    if args.check:
        try:
            print(f"knn-serve: {verify(args.artifact)}")
        except (ArtifactError, InputError) as e:
            print(f"knn-serve: artifact refused: {e}", file=sys.stderr)
            return 3
        return 0
    settings = _settings(args)
    # *_created series double the series count and no query here uses them.
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    common = dict(
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=args.drain_seconds,
        access_log=False,
        server_header=False,
        http="knn_serving.serve.front:DirectProtocol" if args.http == "direct" else "auto",
    )
    # uvicorn drains on SIGTERM, then re-raises the signal under the handler that
    # was there before it started: the default one would kill a cleanly drained
    # server (exit 143). This one ends it with status 0, and before uvicorn (or
    # its supervisor) takes SIGTERM over, it stops the server by SystemExit, so
    # the finally of _multiproc_dir still runs.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    if args.workers == 1:
        uvicorn.run(create_app(settings), **common)
        return 0
    os.environ[LOG_LEVEL_ENV] = args.log_level
    os.environ[SETTINGS_ENV] = json.dumps(
        {
            **{
                k: v
                for k, v in vars(settings).items()
                if k not in ("cache_dir", "identity", "live")
            },
            "cache_dir": str(settings.cache_dir),
            "identity": vars(settings.identity),
            "live": vars(settings.live),
        }
    )
    _preload(settings)
    with _multiproc_dir():
        # uvicorn's supervisor returns after SIGTERM once its workers have exited,
        # so the directory is removed after a drain as after any other exit.
        uvicorn.run(
            "knn_serving.serve.cli:app_from_env", factory=True, workers=args.workers, **common
        )
    return 0


@contextlib.contextmanager
def _multiproc_dir() -> Iterator[None]:
    """Set $PROMETHEUS_MULTIPROC_DIR for the workers; remove it afterwards only if
    this process created it (a directory the user named may be theirs to keep)."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        log.info("multiprocess metrics in %s (from %s; kept)", given, MULTIPROC_ENV)
        yield
        return
    created = tempfile.mkdtemp(prefix="knn-serve-metrics-")
    os.environ[MULTIPROC_ENV] = created
    log.info("multiprocess metrics in %s (removed on exit)", created)
    try:
        yield
    finally:
        shutil.rmtree(created, ignore_errors=True)
        log.info("removed the multiprocess metrics directory %s", created)


if __name__ == "__main__":
    sys.exit(main())
