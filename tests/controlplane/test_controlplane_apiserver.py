"""The harness itself: the apiserver answers, reports the pinned version, stops cleanly."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import psutil  # type: ignore[import-untyped]  # psutil ships no type information
import pytest
from knn_devtools.controlplane import ControlPlane, Options, _remove_stale_workdirs
from knn_devtools.kubectl import Kubectl
from knn_devtools.tools import REPO_ROOT, ToolError, pinned_version, tool_path

pytestmark = pytest.mark.controlplane


def _gone(pid: int) -> bool:
    # A zombie has exited; only its parent (here possibly init) has yet to reap it.
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def test_apiserver_answers_readyz_and_reports_pinned_version(
    control_plane: ControlPlane, kubectl: Kubectl
) -> None:
    assert urlsplit(control_plane.server).hostname == "127.0.0.1"
    assert kubectl.run("get", "--raw", "/readyz").stdout.strip() == "ok"
    version = json.loads(kubectl.run("get", "--raw", "/version").stdout)
    assert version["gitVersion"] == f"v{pinned_version('kube-apiserver')}"
    client = json.loads(kubectl.run("version", "--client", "-o", "json").stdout)
    assert client["clientVersion"]["gitVersion"] == f"v{pinned_version('kubectl')}"


def test_components_listen_on_loopback_only(control_plane: ControlPlane) -> None:
    for name, pid in control_plane.processes.items():
        listening = [
            c.laddr
            for c in psutil.Process(pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        ]
        assert listening, f"{name} listens on nothing"
        assert {addr.ip for addr in listening} == {"127.0.0.1"}, f"{name}: {listening}"


def test_stop_leaves_no_process_or_temp_data_even_when_the_body_fails() -> None:
    cp = ControlPlane(echo=None)
    with pytest.raises(RuntimeError, match="test body failed"), cp:
        pids = list(cp.processes.values())
        workdir = cp.kubeconfig.parent
        assert workdir.is_dir()
        raise RuntimeError("test body failed")
    assert not workdir.exists()
    for pid in pids:
        assert _gone(pid), f"pid {pid} survived stop()"


_OWNER = """
import time
from knn_devtools.controlplane import ControlPlane
cp = ControlPlane(echo=None)
cp.start()
print(*cp.processes.values(), cp.kubeconfig.parent, flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_components_die_with_their_owner(sig: signal.Signals) -> None:
    """A test run killed from outside (CI timeout, OOM killer) leaves nothing running;
    SIGTERM also cleans up, and SIGKILL's leftover data goes at the next start."""
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER], stdout=subprocess.PIPE, text=True, env=_env()
    )
    try:
        assert owner.stdout is not None
        *pids, workdir_name = owner.stdout.readline().split()
        workdir = Path(workdir_name)
        assert len(pids) == 2 and workdir.is_dir()
        owner.send_signal(sig)
        assert owner.wait(timeout=30) == -sig
        deadline = time.monotonic() + 10
        while not all(_gone(int(p)) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(_gone(int(p)) for p in pids), f"components {pids} outlived their owner"
        if sig == signal.SIGKILL:
            _remove_stale_workdirs()  # what the next ControlPlane.start() does first
        assert not workdir.exists()
    finally:
        owner.kill()
        owner.wait()


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT / "devtools")
    return env


def test_cli_up_and_down(tmp_path: Path) -> None:
    state_dir = tmp_path / "local"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "knn_devtools.controlplane", *args, "--dir", str(state_dir)],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=180,
            check=False,
        )

    up = cli("up")
    assert up.returncode == 0, up.stderr
    assert "control plane ready in" in up.stdout
    state = json.loads((state_dir / "state.json").read_text())
    kubectl = Kubectl(state_dir / "kubeconfig")
    assert kubectl.run("get", "--raw", "/readyz").stdout.strip() == "ok"

    again = cli("up")
    assert again.returncode == 0 and "already running" in again.stdout

    down = cli("down")
    assert down.returncode == 0, down.stderr
    assert not (state_dir / "state.json").exists()
    assert not (state_dir / "kubeconfig").exists()
    for pid in [state["supervisor_pid"], *state["components"].values()]:
        assert _gone(pid), f"pid {pid} survived `down`"


def test_local_stack_components_run_controllers() -> None:
    """kube-controller-manager and kube-scheduler start on demand (for the local stack);
    the ServiceAccount controller proves the controller manager is really working."""
    with ControlPlane(Options(controller_manager=True, scheduler=True), echo=None) as cp:
        assert set(cp.processes) == {
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
        }
        kubectl = cp.kubectl()
        kubectl.run("create", "namespace", "controllers-work")
        kubectl.run(
            "wait",
            "--for=create",
            "serviceaccount/default",
            "-n",
            "controllers-work",
            "--timeout=60s",
        )


def test_missing_binary_is_a_loud_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KNN_CACHE_DIR", str(tmp_path / "empty-cache"))
    expected = r"not built: kube-apiserver \(.*\)\. Run `hack/build-tools.sh kube`"
    with pytest.raises(ToolError, match=expected):
        tool_path("kube-apiserver", build=False)


def test_failed_build_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # A PATH with what build-tools.sh needs before its Go check, and no Go.
    path = tmp_path / "path"
    path.mkdir()
    for tool in ("bash", "dirname", "mkdir"):
        found = shutil.which(tool)
        assert found is not None, tool
        (path / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(path))
    monkeypatch.setenv("KNN_CACHE_DIR", str(tmp_path / "empty-cache"))
    with pytest.raises(ToolError, match=r"build-tools.sh etcd` failed with exit status 2"):
        tool_path("etcd", build=True)
    assert "Go is not installed" in capfd.readouterr().err


def test_control_plane_tests_error_not_skip_without_binaries(tmp_path: Path) -> None:
    env = _env()
    env["KNN_CACHE_DIR"] = str(tmp_path / "empty-cache")
    env["KNN_NO_BUILD"] = "1"
    target = Path(__file__).parent / "test_controlplane_crds.py"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(target)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stdout
    assert "ToolError: not built: etcd" in result.stdout, result.stdout
    assert "skipped" not in result.stdout and "passed" not in result.stdout, result.stdout
