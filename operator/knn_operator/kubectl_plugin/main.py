"""`kubectl knn` (console script `kubectl-knn`): status, history and rollout
actions for KnnIndex and ClusterModel objects (`NAME` or `knn/NAME` for an index,
`clm/NAME` for a model, as kubectl spells them). It runs the real `kubectl`, so
the user's kubeconfig, context and credentials apply exactly as for kubectl itself."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys

from knn_contracts import api

from .render import history_view, status_view

ACTIONS = {
    "promote": (api.ANNOTATION_PROMOTE, "skip to the next step, or end a pause"),
    "abort": (api.ANNOTATION_ABORT, "send all traffic back to the stable revision"),
    "retry": (api.ANNOTATION_RETRY, "roll out a rolled-back revision again"),
    "rebuild": (api.ANNOTATION_REBUILD, "build the same inputs again as a new version"),
}


# kubectl's spellings of the two kinds (plural, singular, short), case-insensitive.
KINDS = {
    **dict.fromkeys(("knn", "knnindex", "knnindexes", "knnindexes.knn.dev"), "knnindex"),
    **dict.fromkeys(
        ("clm", "clustermodel", "clustermodels", "clustermodels.knn.dev"), "clustermodel"
    ),
}
TARGET = "NAME (a KnnIndex), knn/NAME or clm/NAME (a ClusterModel)"


def target(text: str) -> tuple[str, str]:
    """(resource, name) of `NAME` or `TYPE/NAME`; exits with a message for another type."""
    kind, sep, name = text.rpartition("/")
    if not sep:
        return "knnindex", text
    resource = KINDS.get(kind.lower())
    if resource is None:
        raise SystemExit(
            f"kubectl knn: {text!r}: {kind!r} is not a KnnIndex or ClusterModel type "
            f"(expected {TARGET})"
        )
    if not name:
        raise SystemExit(f"kubectl knn: {text!r} names no object (expected {TARGET})")
    return resource, name


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kubectl knn", description=__doc__)
    p.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    p.add_argument("--context", help="kubeconfig context")
    sub = p.add_subparsers(dest="command", required=True)
    for name, text in (
        ("status", "the rollout: revisions, weights, step, last measurements"),
        ("history", "revisions and builds"),
    ):
        sub.add_parser(name, help=text).add_argument("name", help=TARGET)
    for name, (_, text) in ACTIONS.items():
        sub.add_parser(name, help=text).add_argument("name", help=TARGET)
    return p


def _kubectl(args: argparse.Namespace, *rest: str) -> subprocess.CompletedProcess[str]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise SystemExit("kubectl knn: kubectl is not on PATH")
    cmd = [kubectl]
    if args.context:
        cmd += ["--context", args.context]
    if args.namespace:
        cmd += ["-n", args.namespace]
    done = subprocess.run([*cmd, *rest], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(done.stderr.strip() or f"kubectl exited with {done.returncode}")
    return done


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    resource, name = target(args.name)
    now = dt.datetime.now(dt.UTC)
    if args.command in ACTIONS:
        key, _ = ACTIONS[args.command]
        # A new value each time: the operator acts on a value it has not handled yet.
        value = now.isoformat(timespec="seconds").replace("+00:00", "Z")
        _kubectl(args, "annotate", resource, name, f"{key}={value}", "--overwrite")
        print(f"{resource}/{name}: {args.command} requested ({key}={value})")
        return 0
    obj = json.loads(_kubectl(args, "get", resource, name, "-o", "json").stdout)
    view = status_view if args.command == "status" else history_view
    print(view(obj, now))
    return 0


if __name__ == "__main__":
    sys.exit(main())
