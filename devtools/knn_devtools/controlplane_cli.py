"""``python -m knn_devtools.controlplane up|down|status|run|bench --dir DIR``.

``up`` starts a supervisor (``run``) in its own session and returns once the
apiserver is ready. The supervisor owns the components (they die with it) and
stops them on SIGTERM, which is all ``down`` sends. DIR holds only what a user
needs: ``kubeconfig``, ``state.json`` and ``logs/``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Final

from knn_devtools.controlplane import ControlPlane, ControlPlaneError, Options
from knn_devtools.procs import ProcessError
from knn_devtools.supervisor import SavedState, cmdline_contains, stop_on_signals, supervise
from knn_devtools.tools import ToolError, ensure_tools

STATE_FILE: Final = "state.json"
KUBECONFIG_FILE: Final = "kubeconfig"
_MODULE: Final = "knn_devtools.controlplane"


@dataclass(frozen=True)
class State(SavedState):
    FILE: ClassVar[str] = STATE_FILE
    ERROR: ClassVar[type[Exception]] = ControlPlaneError

    supervisor_pid: int
    server: str
    kubeconfig: str
    startup_seconds: float
    components: dict[str, int]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    directory = Path(args.dir).resolve()
    options = Options(
        controller_manager=args.controller_manager or args.local_stack,
        scheduler=args.scheduler or args.local_stack,
        startup_timeout=args.timeout,
    )
    try:
        if args.command == "up":
            return up(directory, options)
        if args.command == "down":
            return down(directory)
        if args.command == "status":
            return status(directory)
        if args.command == "bench":
            return bench(options, args.runs)
        return run(directory, options)
    except (ControlPlaneError, ToolError, ProcessError) as err:
        print(f"controlplane: {err}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m {_MODULE}", description=__doc__)
    parser.add_argument("command", choices=("up", "down", "status", "run", "bench"))
    parser.add_argument("--dir", default=".local", help="state directory (default: .local)")
    parser.add_argument(
        "--controller-manager", action="store_true", help="also run kube-controller-manager"
    )
    parser.add_argument("--scheduler", action="store_true", help="also run kube-scheduler")
    parser.add_argument(
        "--local-stack",
        action="store_true",
        help="shorthand for --controller-manager --scheduler",
    )
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for readiness")
    parser.add_argument("--runs", type=int, default=5, help="bench: start/stop cycles")
    return parser


def bench(options: Options, runs: int) -> int:
    """Starts and stops a control plane ``runs`` times; prints start and stop times."""
    ensure_tools(*options.tools())  # a first build must not be timed as a start
    starts: list[float] = []
    stops: list[float] = []
    for i in range(1, runs + 1):
        cp = ControlPlane(options, echo=None)
        cp.start()
        began = time.monotonic()
        cp.stop()
        stops.append(time.monotonic() - began)
        starts.append(cp.startup_seconds)
        print(
            f"run {i}: ready in {cp.startup_seconds:.2f}s (etcd {cp.timings.etcd:.2f}s, "
            f"kube-apiserver {cp.timings.apiserver:.2f}s"
            + "".join(f", {n} {t:.2f}s" for n, t in cp.timings.others.items())
            + f"), stopped in {stops[-1]:.2f}s"
        )
    print(f"start: {_summary(starts)}")
    print(f"stop:  {_summary(stops)}")
    return 0


def _summary(values: list[float]) -> str:
    return (
        f"median {statistics.median(values):.2f}s, min {min(values):.2f}s, "
        f"max {max(values):.2f}s over {len(values)} runs"
    )


def up(directory: Path, options: Options) -> int:
    existing = State.load(directory)
    if existing is not None and is_supervisor(existing.supervisor_pid):
        print(f"control plane already running at {existing.server}")
        print(f"export KUBECONFIG={existing.kubeconfig}")
        return 0
    from knn_devtools import cluster_cli

    cluster_pid = cluster_cli.running_supervisor(directory)
    if cluster_pid is not None:
        raise ControlPlaneError(
            f"the local cluster (`make up`, supervisor pid {cluster_pid}) is running on "
            f"{directory} and has its own control plane; stop it with `make down` first"
        )
    (directory / STATE_FILE).unlink(missing_ok=True)
    # A missing binary is built here, in the foreground, where its progress is visible.
    ensure_tools(*options.tools())
    log = directory / "logs" / "supervisor.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", _MODULE, "run", "--dir", str(directory)]
    argv += ["--timeout", str(options.startup_timeout)]
    if options.controller_manager:
        argv.append("--controller-manager")
    if options.scheduler:
        argv.append("--scheduler")
    with open(log, "ab") as out:
        supervisor = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )
    deadline = time.monotonic() + options.startup_timeout + 30
    while time.monotonic() < deadline:
        state = State.load(directory)
        if state is not None and state.supervisor_pid == supervisor.pid:
            print(f"control plane ready in {state.startup_seconds:.2f}s at {state.server}")
            print(f"export KUBECONFIG={state.kubeconfig}")
            return 0
        code = supervisor.poll()
        if code is not None:
            raise ControlPlaneError(
                f"control plane supervisor exited with status {code}; see {log}:\n" + _tail(log)
            )
        time.sleep(0.1)
    supervisor.send_signal(signal.SIGTERM)
    raise ControlPlaneError(f"control plane not ready in time; see {log}:\n" + _tail(log))


def down(directory: Path, timeout: float = 30.0) -> int:
    state = State.load(directory)
    if state is None:
        print(f"no control plane recorded in {directory}")
        return 0
    if is_supervisor(state.supervisor_pid):
        os.kill(state.supervisor_pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while is_supervisor(state.supervisor_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    # The supervisor may have been SIGKILLed or be stuck: make sure no component
    # survives it (each component is the leader of its own process group).
    for name, pid in state.components.items():
        if cmdline_contains(pid, name):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
    if is_supervisor(state.supervisor_pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(state.supervisor_pid, signal.SIGKILL)
    (directory / STATE_FILE).unlink(missing_ok=True)
    (directory / KUBECONFIG_FILE).unlink(missing_ok=True)
    print("control plane stopped")
    return 0


def status(directory: Path) -> int:
    state = State.load(directory)
    if state is None or not is_supervisor(state.supervisor_pid):
        print(f"no control plane running for {directory}")
        return 1
    print(f"control plane running at {state.server} (supervisor pid {state.supervisor_pid})")
    print(f"export KUBECONFIG={state.kubeconfig}")
    return 0


def run(directory: Path, options: Options) -> int:
    """Foreground: start, write state, wait for SIGTERM/SIGINT/SIGHUP, stop."""
    stop = stop_on_signals()
    directory.mkdir(parents=True, exist_ok=True)
    kubeconfig_path = directory / KUBECONFIG_FILE
    cp = ControlPlane(options, log_dir=directory / "logs", kubeconfig_path=kubeconfig_path)
    with cp:
        state = State(
            supervisor_pid=os.getpid(),
            server=cp.server,
            kubeconfig=str(kubeconfig_path),
            startup_seconds=round(cp.startup_seconds, 3),
            components=cp.processes,
        )
        supervise(stop, state, directory, cp.check_running)
    return 0


def is_supervisor(pid: int) -> bool:
    return cmdline_contains(pid, _MODULE)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as err:
        return f"(cannot read {path}: {err})"
