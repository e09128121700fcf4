"""`python -m knn_operator`: run the operator (kopf) in this process.

Options: --namespace NS (repeatable; default: all namespaces),
--metrics-port (default 8081), --liveness-port (default 8082),
--log-level (default INFO), --kopf-log-level (default: --log-level).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from typing import Any, cast

import kopf
from prometheus_client import start_http_server

from .handlers import clustermodel, knnindex, runtime  # noqa: F401  (registers the handlers)

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def identity() -> str:
    """Who this operator is, without kopf's getpass.getuser(): the images run as a
    uid with no passwd entry (65532), where that raises KeyError at start."""
    return os.environ.get("POD_ID") or f"knn-operator@{socket.gethostname()}/{os.getpid()}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m knn_operator")
    ap.add_argument(
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable); default: all",
    )
    ap.add_argument("--metrics-port", type=int, default=8081)
    ap.add_argument("--liveness-port", type=int, default=8082)
    ap.add_argument("--bind", default="0.0.0.0")
    ap.add_argument("--log-level", default="INFO", type=str.upper, choices=LEVELS)
    # kopf logs one INFO line per event it handles: a busy cluster's log is mostly that.
    ap.add_argument("--kopf-log-level", default=None, type=str.upper, choices=LEVELS)
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    logging.getLogger("kopf").setLevel(args.kopf_log_level or args.log_level)
    start_http_server(args.metrics_port, addr=args.bind)
    runtime.watch_namespaces(args.namespace)
    asyncio.run(
        kopf.operator(
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            standalone=True,
            liveness_endpoint=f"http://{args.bind}:{args.liveness_port}/healthz",
            identity=cast(Any, identity()),
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
