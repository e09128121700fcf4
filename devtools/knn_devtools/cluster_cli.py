"""``python -m knn_devtools.cluster up|down|status|run --dir DIR`` (``make up`` / ``make down``).

``up`` starts a supervisor (``run``) in its own session and returns once the
node is Ready and cluster DNS answers; the supervisor owns every process of the
stack and stops it on SIGTERM. ``down`` stops the supervisor and then sweeps
the host from what DIR records (processes, mounts, interfaces, iptables chains,
cgroups, sysctls), so it also cleans up after a supervisor that was killed.

DIR holds ``kubeconfig`` (admin), ``cluster.json`` (the supervisor's state),
``cluster/run`` (the node's state, removed by ``down``) and ``cluster/logs`` (kept).
The control plane alone (``make controlplane-up``) shares DIR: each refuses to
start while the other runs.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar, Final

from knn_devtools.cluster import (
    CONFIG_FILE,
    FULL_STACK,
    Cluster,
    ClusterConfig,
    ClusterError,
    sweep,
)
from knn_devtools.images import ImageError
from knn_devtools.procs import ProcessError
from knn_devtools.supervisor import SavedState, cmdline_contains, stop_on_signals, supervise
from knn_devtools.tools import ToolError

STATE_FILE: Final = "cluster.json"
KUBECONFIG_FILE: Final = "kubeconfig"
_MODULE: Final = "knn_devtools.cluster"


@dataclass(frozen=True)
class State(SavedState):
    FILE: ClassVar[str] = STATE_FILE
    ERROR: ClassVar[type[Exception]] = ClusterError

    supervisor_pid: int
    kubeconfig: str
    startup_seconds: float
    timings: dict[str, float]
    # What components serve on this machine, e.g. {"prometheus": "http://127.0.0.1:PORT"}.
    endpoints: dict[str, str]


def config_for(directory: Path) -> ClusterConfig:
    return ClusterConfig(
        state_dir=directory / "cluster",
        kubeconfig_path=directory / KUBECONFIG_FILE,
        addons=FULL_STACK,
    )


def running_supervisor(directory: Path) -> int | None:
    """The pid of the live cluster supervisor for ``directory``, if any."""
    try:
        state = State.load(directory)
    except ClusterError:
        return None
    if state is not None and cmdline_contains(state.supervisor_pid, _MODULE):
        return state.supervisor_pid
    return None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    directory = Path(args.dir).resolve()
    try:
        if args.command == "up":
            return up(directory, args.timeout)
        if args.command == "down":
            return down(directory)
        if args.command == "status":
            return status(directory)
        return run(directory, args.timeout)
    except (ClusterError, ToolError, ProcessError, ImageError) as err:
        print(f"cluster: {err}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m {_MODULE}", description=__doc__)
    parser.add_argument("command", choices=("up", "down", "status", "run"))
    parser.add_argument("--dir", default=".local", help="state directory (default: .local)")
    parser.add_argument(
        "--timeout", type=float, default=180.0, help="seconds to wait for readiness"
    )
    return parser


def up(directory: Path, timeout: float) -> int:
    pid = running_supervisor(directory)
    if pid is not None:
        print(f"cluster already running (supervisor pid {pid})")
        print(f"export KUBECONFIG={directory / KUBECONFIG_FILE}")
        return 0
    from knn_devtools import controlplane_cli

    cp_state = controlplane_cli.State.load(directory)
    if cp_state is not None and controlplane_cli.is_supervisor(cp_state.supervisor_pid):
        raise ClusterError(
            f"a control plane alone (`make controlplane-up`) is running on {directory}; "
            "stop it with `make controlplane-down` first"
        )
    (directory / STATE_FILE).unlink(missing_ok=True)
    log = config_for(directory).log_dir / "supervisor.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    # The log is appended to across runs: echo only this run's lines.
    shown = _echo_new_lines(log, 0, echo=False)
    argv = [sys.executable, "-m", _MODULE, "run", "--dir", str(directory)]
    argv += ["--timeout", str(timeout)]
    with open(log, "ab") as out:
        supervisor = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )
    # Tools are built and images made by the supervisor: that can take long the first time.
    while True:
        state = State.load(directory)
        if state is not None and state.supervisor_pid == supervisor.pid:
            print(f"cluster ready in {state.startup_seconds:.1f}s")
            for name, url in state.endpoints.items():
                print(f"{name}: {url}")
            print(f"export KUBECONFIG={state.kubeconfig}")
            return 0
        shown = _echo_new_lines(log, shown)
        code = supervisor.poll()
        if code is not None:
            _echo_new_lines(log, shown)
            raise ClusterError(f"cluster supervisor exited with status {code}; see {log}")
        time.sleep(0.2)


def _echo_new_lines(log: Path, shown: int, *, echo: bool = True) -> int:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return shown
    if echo:
        for line in lines[shown:]:
            print(f"  {line}", flush=True)
    return len(lines)


def down(directory: Path, timeout: float = 60.0) -> int:
    pid = running_supervisor(directory)
    config = config_for(directory)
    if pid is None and not (config.state_dir / CONFIG_FILE).exists():
        print(f"no cluster recorded in {directory}")
        return 0
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        # The process itself, not its state file (removed before it has stopped).
        deadline = time.monotonic() + timeout
        while cmdline_contains(pid, _MODULE) and time.monotonic() < deadline:
            time.sleep(0.2)
        if cmdline_contains(pid, _MODULE):
            os.kill(pid, signal.SIGKILL)
    # Whatever the supervisor did or did not manage: sweep from the recorded state.
    sweep(config)
    (directory / STATE_FILE).unlink(missing_ok=True)
    (directory / KUBECONFIG_FILE).unlink(missing_ok=True)
    print("cluster stopped")
    return 0


def status(directory: Path) -> int:
    pid = running_supervisor(directory)
    if pid is None:
        print(f"no cluster running for {directory}")
        return 1
    print(f"cluster running (supervisor pid {pid})")
    state = State.load(directory)
    for name, url in (state.endpoints if state is not None else {}).items():
        print(f"{name}: {url}")
    print(f"export KUBECONFIG={directory / KUBECONFIG_FILE}")
    return 0


def run(directory: Path, timeout: float) -> int:
    """Foreground: start, write state, wait for SIGTERM/SIGINT/SIGHUP, stop."""
    stop = stop_on_signals()
    directory.mkdir(parents=True, exist_ok=True)
    config = config_for(directory)
    config = ClusterConfig(**{**asdict(config), "startup_timeout": timeout})
    cluster = Cluster(config, echo=lambda m: print(m, flush=True))
    with cluster:
        state = State(
            supervisor_pid=os.getpid(),
            kubeconfig=str(config.admin_kubeconfig),
            startup_seconds=round(cluster.startup_seconds, 2),
            timings={k: round(v, 2) for k, v in cluster.timings.items()},
            endpoints=dict(cluster.endpoints),
        )
        supervise(stop, state, directory, cluster.check_running)
    return 0
