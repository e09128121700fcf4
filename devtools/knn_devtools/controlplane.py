"""A real Kubernetes control plane on loopback: etcd + kube-apiserver, optionally
kube-controller-manager and kube-scheduler, from the binaries hack/build-tools.sh builds.

Used three ways:

* in Python, as a context manager (pytest fixtures, the local stack)::

      with ControlPlane() as cp:
          cp.kubectl().run("get", "namespaces")

* ``python -m knn_devtools.controlplane up --dir .local`` starts one in the
  background and writes ``.local/kubeconfig``; ``down --dir .local`` stops it;
* ``python -m knn_devtools.controlplane run --dir .local`` runs one in the foreground.

Everything listens on 127.0.0.1 only, on ports free at start. Certificates, keys
and etcd's data live in a temporary directory that :meth:`ControlPlane.stop`
removes; stop also runs at interpreter exit and on SIGTERM/SIGHUP, and the
children die with their owner even if it is SIGKILLed (see procs.py).
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import shutil
import ssl
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from knn_devtools import kubeconfig
from knn_devtools.certs import PKI, PKIFiles
from knn_devtools.kubectl import Kubectl
from knn_devtools.lifecycle import Lifecycle, SafetyNet
from knn_devtools.procs import (
    ManagedProcess,
    ProcessError,
    ProcessTimeoutError,
    free_loopback_port,
    free_loopback_ports,
)
from knn_devtools.tools import ensure_tools

SERVICE_CIDR: Final = "10.96.0.0/12"
# The first address of SERVICE_CIDR, which the apiserver gives the `kubernetes` Service.
KUBERNETES_SERVICE_IP: Final = "10.96.0.1"
SERVICE_ACCOUNT_ISSUER: Final = "https://kubernetes.default.svc.cluster.local"
_POLL_INTERVAL: Final = 0.05
_ETCD_MEMBER: Final = "knn"
_WORKDIR_PREFIX: Final = "knn-controlplane-"
# Holds the owner's pid, so a later start can tell a dead owner's leftovers.
_OWNER_FILE: Final = "owner.pid"


class ControlPlaneError(RuntimeError):
    """The control plane could not be started (the message says which part and why)."""


@dataclass(frozen=True)
class Options:
    """What to run. The defaults are what the control-plane tests need, and no more."""

    controller_manager: bool = False
    scheduler: bool = False
    startup_timeout: float = 90.0
    # Extra kube-apiserver flags, appended last so they override the defaults.
    apiserver_args: tuple[str, ...] = ()
    # Port collisions (another process grabbing a port between probe and bind)
    # are retried with fresh ports this many times.
    port_retries: int = 2
    # Where kube-apiserver listens and what it advertises as the `kubernetes`
    # Service's endpoint. Loopback for tests; the local cluster uses the node's
    # address so that pods reach it through the Service.
    bind_address: str = "127.0.0.1"
    service_cidr: str = SERVICE_CIDR

    @property
    def kubernetes_service_ip(self) -> str:
        """The first address of the service range, which the `kubernetes` Service gets."""
        return str(next(ipaddress.ip_network(self.service_cidr).hosts()))

    def tools(self) -> list[str]:
        """The binaries these options run."""
        names = ["etcd", "kube-apiserver"]
        if self.controller_manager:
            names.append("kube-controller-manager")
        if self.scheduler:
            names.append("kube-scheduler")
        return names


@dataclass
class _Timings:
    etcd: float = 0.0
    apiserver: float = 0.0
    others: dict[str, float] = field(default_factory=dict)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class ControlPlane(Lifecycle):
    """etcd + kube-apiserver (+ optional controllers) for the lifetime of a ``with`` block."""

    def __init__(
        self,
        options: Options | None = None,
        *,
        log_dir: Path | None = None,
        kubeconfig_path: Path | None = None,
        echo: Callable[[str], None] | None = _stderr,
        pki: PKI | None = None,
    ) -> None:
        """``log_dir`` keeps the components' logs after stop (default: removed with
        the rest); ``kubeconfig_path`` is where the admin kubeconfig is written
        (default: inside the temporary directory); ``echo`` receives progress lines;
        ``pki`` is used instead of a fresh one (the local cluster issues node and
        kubelet-client certificates from the same CA before the apiserver starts)."""
        self.options = options if options is not None else Options()
        self._pki_arg = pki
        self._log_dir_arg = log_dir
        self._kubeconfig_arg = kubeconfig_path
        self._echo = echo
        self._workdir: Path | None = None
        self._processes: list[ManagedProcess] = []
        self._pki: PKI | None = None
        self._files: PKIFiles | None = None
        self._server: str | None = None
        self._etcd_url: str | None = None
        self._kubeconfig: Path | None = None
        self.timings = _Timings()
        self.startup_seconds: float = 0.0

    # -- public API ----------------------------------------------------------------

    @property
    def server(self) -> str:
        """``https://127.0.0.1:PORT`` of kube-apiserver."""
        if self._server is None:
            raise ControlPlaneError("control plane is not started")
        return self._server

    @property
    def kubeconfig(self) -> Path:
        """Admin (system:masters) kubeconfig with embedded credentials."""
        if self._kubeconfig is None:
            raise ControlPlaneError("control plane is not started")
        return self._kubeconfig

    @property
    def pki(self) -> PKI:
        if self._pki is None:
            raise ControlPlaneError("control plane is not started")
        return self._pki

    @property
    def log_dir(self) -> Path:
        if self._log_dir_arg is not None:
            return self._log_dir_arg
        if self._workdir is None:
            raise ControlPlaneError("control plane is not started")
        return self._workdir / "logs"

    @property
    def processes(self) -> dict[str, int]:
        """Component name -> pid (each is also its process group id)."""
        return {p.name: p.pid for p in self._processes}

    def kubectl(self) -> Kubectl:
        return Kubectl(self.kubeconfig)

    def check_running(self) -> None:
        """Raises :class:`ProcessError`, with its log tail, if any component has exited."""
        for proc in self._processes:
            proc.check_running()

    def start(self) -> None:
        if self._workdir is not None:
            raise ControlPlaneError("control plane is already started")
        # Resolve (and if needed build) every binary before the clock starts.
        binaries = ensure_tools(*self.options.tools())
        _live.register(self)
        began = time.monotonic()
        try:
            self._start(binaries)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        self._say(
            f"control plane ready in {self.startup_seconds:.2f}s at {self.server} "
            f"(etcd {self.timings.etcd:.2f}s, kube-apiserver {self.timings.apiserver:.2f}s"
            + "".join(f", {n} {t:.2f}s" for n, t in self.timings.others.items())
            + ")"
        )

    def stop(self) -> None:
        """Stops every component in reverse start order and removes temporary data.

        Safe to call more than once and from signal handlers or atexit.
        """
        errors: list[str] = []
        for proc in reversed(self._processes):
            try:
                proc.stop()
            except Exception as err:  # keep stopping the rest
                errors.append(f"{proc.name}: {err}")
        self._processes = []
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        if self._kubeconfig_arg is not None:
            self._kubeconfig_arg.unlink(missing_ok=True)
        self._server = None
        self._etcd_url = None
        self._kubeconfig = None
        _live.unregister(self)
        if errors:
            raise ControlPlaneError("errors while stopping: " + "; ".join(errors))

    # -- start-up ------------------------------------------------------------------

    def _start(self, binaries: dict[str, Path]) -> None:
        _remove_stale_workdirs()
        self._workdir = Path(tempfile.mkdtemp(prefix=_WORKDIR_PREFIX))
        (self._workdir / _OWNER_FILE).write_text(f"{os.getpid()}\n")
        self._pki = self._pki_arg or PKI.generate(
            service_ip=self.options.kubernetes_service_ip, extra_ips=(self.options.bind_address,)
        )
        self._files = self._pki.write(self._workdir / "pki")
        attempts = self.options.port_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                self._start_etcd(binaries["etcd"])
                self._start_apiserver(binaries["kube-apiserver"])
                break
            except ProcessError as err:
                if attempt == attempts or "address already in use" not in str(err):
                    raise ControlPlaneError(str(err)) from None
                self._say(f"port collision, retrying with new ports ({err})")
                for proc in reversed(self._processes):
                    proc.stop()
                self._processes = []
                shutil.rmtree(self._workdir / "etcd", ignore_errors=True)
        admin = kubeconfig.build(
            self.server,
            self._pki.ca.cert_pem,
            user="knn-admin",
            client_cert_pem=self._pki.admin.cert_pem,
            client_key_pem=self._pki.admin.key_pem,
        )
        path = self._kubeconfig_arg or self._workdir / "kubeconfig"
        self._kubeconfig = kubeconfig.write(path, admin)
        # Components get their own copy so a caller's kubeconfig can move freely.
        component_kubeconfig = kubeconfig.write(self._workdir / "admin.kubeconfig", admin)
        if "kube-controller-manager" in binaries:
            self._start_controller_manager(
                binaries["kube-controller-manager"], component_kubeconfig
            )
        if "kube-scheduler" in binaries:
            self._start_scheduler(binaries["kube-scheduler"], component_kubeconfig)

    def _start_etcd(self, binary: Path) -> None:
        assert self._workdir is not None
        began = time.monotonic()
        client, peer = free_loopback_ports(2)
        client_url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        proc = self._spawn(
            "etcd",
            [
                str(binary),
                f"--name={_ETCD_MEMBER}",
                f"--data-dir={self._workdir / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster={_ETCD_MEMBER}={peer_url}",
                "--initial-cluster-state=new",
                # Throwaway data: durability buys nothing and fsync costs seconds.
                "--unsafe-no-fsync",
                # One member, no peers on a network: elect the leader in ~0.1 s
                # instead of the ~1 s that defaults sized for real networks take.
                "--heartbeat-interval=10",
                "--election-timeout=100",
                "--log-level=warn",
            ],
        )
        self._wait_until(proc, lambda: _http_ok("127.0.0.1", client, "/health"), "etcd /health")
        self._etcd_url = client_url
        self.timings.etcd = time.monotonic() - began

    def _start_apiserver(self, binary: Path) -> None:
        files = self._files
        assert files is not None and self._workdir is not None and self._etcd_url is not None
        began = time.monotonic()
        port = free_loopback_port()
        proc = self._spawn(
            "kube-apiserver",
            [
                str(binary),
                f"--etcd-servers={self._etcd_url}",
                f"--bind-address={self.options.bind_address}",
                f"--advertise-address={self.options.bind_address}",
                f"--secure-port={port}",
                f"--tls-cert-file={files.serving_cert}",
                f"--tls-private-key-file={files.serving_key}",
                f"--client-ca-file={files.ca_cert}",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={files.sa_public_key}",
                f"--service-account-signing-key-file={files.sa_private_key}",
                f"--service-cluster-ip-range={self.options.service_cidr}",
                "--authorization-mode=Node,RBAC",
                # PodSecurity is on by default; naming it keeps it on if defaults change.
                "--enable-admission-plugins=NodeRestriction,PodSecurity",
                # Local-stack pods run commands as host processes; privileged is the
                # namespace label's decision, not the apiserver's.
                "--allow-privileged=true",
                "--profiling=false",
                *self.options.apiserver_args,
            ],
        )
        ctx = self._client_tls()
        self._wait_until(
            proc,
            lambda: _http_ok(self.options.bind_address, port, "/readyz", ctx),
            "kube-apiserver /readyz",
        )
        self._server = f"https://{self.options.bind_address}:{port}"
        self.timings.apiserver = time.monotonic() - began

    def _start_controller_manager(self, binary: Path, kubeconfig_path: Path) -> None:
        files = self._files
        assert files is not None
        began = time.monotonic()
        port = free_loopback_port()
        proc = self._spawn(
            "kube-controller-manager",
            [
                *_component_args(binary, kubeconfig_path, port),
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={files.sa_private_key}",
                f"--root-ca-file={files.ca_cert}",
                f"--cluster-signing-cert-file={files.ca_cert}",
                f"--cluster-signing-key-file={files.ca_key}",
                f"--service-cluster-ip-range={self.options.service_cidr}",
                "--profiling=false",
            ],
        )
        self._wait_until(
            proc, lambda: _http_ok("127.0.0.1", port, "/healthz", _insecure_tls()), "/healthz"
        )
        self.timings.others["kube-controller-manager"] = time.monotonic() - began

    def _start_scheduler(self, binary: Path, kubeconfig_path: Path) -> None:
        began = time.monotonic()
        port = free_loopback_port()
        proc = self._spawn(
            "kube-scheduler",
            [
                *_component_args(binary, kubeconfig_path, port),
                "--profiling=false",
            ],
        )
        self._wait_until(
            proc, lambda: _http_ok("127.0.0.1", port, "/healthz", _insecure_tls()), "/healthz"
        )
        self.timings.others["kube-scheduler"] = time.monotonic() - began

    def _spawn(self, name: str, argv: list[str]) -> ManagedProcess:
        proc = ManagedProcess(name, argv, self.log_dir / f"{name}.log")
        # Registered before start so stop() reaches it even if start() is interrupted.
        self._processes.append(proc)
        proc.start()
        return proc

    def _wait_until(self, proc: ManagedProcess, ready: Callable[[], bool], what: str) -> None:
        try:
            proc.wait_until(what, ready, self.options.startup_timeout, _POLL_INTERVAL)
        except ProcessTimeoutError as err:
            raise ControlPlaneError(str(err)) from None

    def _client_tls(self) -> ssl.SSLContext:
        files = self._files
        assert files is not None
        ctx = ssl.create_default_context(cafile=str(files.ca_cert))
        ctx.load_cert_chain(str(files.admin_cert), str(files.admin_key))
        return ctx

    def _say(self, message: str) -> None:
        if self._echo is not None:
            self._echo(message)


def _remove_stale_workdirs() -> None:
    """Removes temporary directories left by owners that died without stopping
    (SIGKILL, OOM): their components died with them, their data did not."""
    for candidate in Path(tempfile.gettempdir()).glob(f"{_WORKDIR_PREFIX}*"):
        try:
            owner = int((candidate / _OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # not ours, or still being created
        if not _pid_alive(owner):
            shutil.rmtree(candidate, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, belongs to someone else
    return True


def _component_args(binary: Path, kubeconfig_path: Path, port: int) -> list[str]:
    """What kube-controller-manager and kube-scheduler both need: the admin
    kubeconfig for every client, loopback only, one instance (no election)."""
    return [
        str(binary),
        f"--kubeconfig={kubeconfig_path}",
        f"--authentication-kubeconfig={kubeconfig_path}",
        f"--authorization-kubeconfig={kubeconfig_path}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        "--leader-elect=false",
    ]


def _insecure_tls() -> ssl.SSLContext:
    # Controller-manager and scheduler serve a self-signed certificate on loopback;
    # only their health is read, never a credential sent.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _http_ok(host: str, port: int, path: str, tls: ssl.SSLContext | None = None) -> bool:
    conn: http.client.HTTPConnection
    if tls is None:
        conn = http.client.HTTPConnection(host, port, timeout=2)
    else:
        conn = http.client.HTTPSConnection(host, port, timeout=2, context=tls)
    try:
        conn.request("GET", path)
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


# -- process-wide safety net -----------------------------------------------------------

_live: SafetyNet[ControlPlane] = SafetyNet()


def stop_all() -> None:
    """Stops every control plane this process started; registered with atexit."""
    _live.stop_all()


if __name__ == "__main__":
    from knn_devtools.controlplane_cli import main

    sys.exit(main())
