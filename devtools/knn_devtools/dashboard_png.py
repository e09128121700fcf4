"""`python -m knn_devtools.dashboard_png`: the Grafana dashboard's panels drawn with
matplotlib from a real run, written to docs/dashboard.png.

By default it makes the run itself (knn_devtools.dashboard_run: the real operator on
the real API server, real builds, real servers under load, a real Prometheus; a canary
promoted and one rolled back; about three minutes). With --prometheus URL it draws
the last --minutes of any Prometheus that scrapes the operator and the serving pods
(e.g. the local cluster's after `make demo`).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

from knn_devtools.dashboard_data import fetch
from knn_devtools.dashboard_plot import draw
from knn_devtools.tools import REPO_ROOT

OUT = REPO_ROOT / "docs" / "dashboard.png"


def _save(url: str, start: float, end: float, out: Path, title: str, namespace: str) -> None:
    panels = fetch(url, start, end, namespace=namespace)
    figure = draw(panels, start, title)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m knn_devtools.dashboard_png", description=__doc__)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--prometheus", help="draw from this Prometheus instead of making a run")
    ap.add_argument("--minutes", type=float, default=15.0, help="with --prometheus: how far back")
    ap.add_argument("--namespace", default=".+", help="the dashboard's $namespace (a regex)")
    ap.add_argument("--workdir", type=Path, help="keep the run's files here (default: temporary)")
    args = ap.parse_args(argv)
    if args.prometheus:
        end = time.time()
        title = f"knn-operator dashboard: {args.prometheus}, last {args.minutes:g} minutes"
        _save(args.prometheus, end - 60 * args.minutes, end, args.out, title, args.namespace)
        return 0
    from knn_devtools.dashboard_run import real_run  # the run's imports only when running

    with contextlib.ExitStack() as stack:
        workdir = args.workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="knn-dashboard-"))
        )
        run = stack.enter_context(real_run(workdir, say=_say))
        title = (
            "knn-operator dashboard from a real run: canary 1 (higher efSearch) promoted, "
            "canary 2 (low efSearch) rolled back on recall"
        )
        _save(run.prometheus.url, run.started, run.ended, args.out, title, run.namespace)
    return 0


def _say(text: str) -> None:
    print(f"==> {text}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
