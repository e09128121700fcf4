"""A real single-node Kubernetes cluster on this machine, without Docker or a registry.

The control plane of :mod:`knn_devtools.controlplane` (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler) plus a node: containerd v2 with runc and
the CNI bridge, the kubelet (authenticated, authorized server: the apiserver
uses a client certificate for logs and exec), kube-proxy in iptables mode, and
cluster DNS. Every binary is built from its Go module by hack/build-tools.sh;
images are made locally (:mod:`knn_devtools.images`) and imported into
containerd.

Used as a context manager (the e2e tests) or through
``python -m knn_devtools.cluster up|down|status --dir .local`` (``make up``).

Host-level changes (each undone by :func:`sweep`, which also runs after a
crashed owner, from what the state directory records):

* a port-less bridge ``<name>-node`` holding the node's address (the apiserver
  and the kubelet listen there, so pods reach them and nothing else does), and the
  CNI bridge ``<name>-cni0``;
* iptables chains ``KNN-GUARD-<NAME>`` dropping pod and service traffic that
  would leave through the external interface, kube-proxy's and the kubelet's
  chains;
* sysctls (forwarding, bridge netfilter, and the kernel tunables the kubelet
  sets), saved first and restored;
* mounts under the state directory, cgroups named ``kubepods``, containerd's
  shim sockets, libcni's cache entries of this cluster's network.

Only one cluster runs per machine: kube-proxy and the kubelet own host-wide
iptables chains (``KUBE-SERVICES``, ``KUBE-FIREWALL``) that a second node would
fight over. A second start refuses and names the running one.

Components are pluggable: :class:`Component` is what the cluster starts in order
and stops in reverse; a gateway (Traefik) is one more of them.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, Final, Protocol

import yaml

from knn_devtools import images, kubeconfig
from knn_devtools.buildkit import ProductImages
from knn_devtools.certs import PKI, CertificateAuthority, CertKey
from knn_devtools.controlplane import ControlPlane, ControlPlaneError, Options
from knn_devtools.gateway import Gateway
from knn_devtools.incluster import InClusterOperator, LocalStorage, Prometheus
from knn_devtools.kubectl import Kubectl
from knn_devtools.lifecycle import Lifecycle, SafetyNet
from knn_devtools.procs import ManagedProcess, free_loopback_ports, http_ok
from knn_devtools.tools import bin_dir, cni_bin_dir, ensure_tools

CONFIG_FILE: Final = "cluster-config.json"
# Host-wide: which cluster owns this machine's node-level state right now.
HOST_LOCK_DIR: Final = Path("/run/knn-operator")
HOST_LOCK: Final = HOST_LOCK_DIR / "cluster.lock"
HOST_OWNER: Final = HOST_LOCK_DIR / "cluster.owner"

# Kernel settings that the node changes: IP forwarding and bridge netfilter (for
# kube-proxy's rules to see bridged pod traffic) by us; the rest by the kubelet
# (setupKernelTunables) and kube-proxy. Saved before, restored by sweep().
SAVED_SYSCTLS: Final = (
    "net.ipv4.ip_forward",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.ipv4.conf.all.route_localnet",
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
)
# iptables chains the kubelet creates (kube-proxy --cleanup removes kube-proxy's).
_KUBELET_CHAINS: Final = ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT")
# Fixed host paths the kubelet, containerd and libcni use whatever their config says.
_DEVICE_PLUGINS: Final = Path("/var/lib/kubelet/device-plugins")
_CONTAINER_LOGS: Final = Path("/var/log/containers")
_CNI_RESULTS: Final = Path("/var/lib/cni/results")
_SHIM_SOCKETS: Final = Path("/run/containerd/s")
# containerd (shim sockets, task fifos, runc state of non-CRI containers such as
# BuildKit's) and buildkitd (its OpenTelemetry socket) use these whatever we configure.
_RUNTIME_DIRS: Final = (Path("/run/containerd"), Path("/run/buildkit"))
_CGROUP_ROOT: Final = Path("/sys/fs/cgroup")
# Cgroups the node's containers live in (kubelet's cgroupfs driver; BuildKit's).
_CGROUP_NAMES: Final = ("kubepods", "buildkit")


_MAX_RUN_DIR: Final = 60
_BUILTIN_CHAINS: Final = frozenset({"INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING"})


class ClusterError(RuntimeError):
    """The cluster could not be started or stopped (the message says what and why)."""


@dataclass(frozen=True)
class ClusterConfig:
    """Where a cluster keeps its state and which addresses and names it uses.

    ``name`` prefixes every host-level object (interfaces, iptables chains, CNI
    network), so what a cluster made is found by name; keep it short (interface
    names are at most 15 characters).
    """

    state_dir: Path
    name: str = "knn"
    node_name: str = "knn-node"
    node_ip: str = "10.250.0.1"
    pod_cidr: str = "10.244.0.0/24"
    service_cidr: str = "10.96.0.0/16"
    cluster_domain: str = "cluster.local"
    kubelet_port: int = 10250
    # Where the admin kubeconfig goes (default: in the state directory).
    kubeconfig_path: Path | None = None
    # Extra components by name, after the node (see COMPONENTS); "dns" is on by default.
    addons: tuple[str, ...] = ("dns",)
    startup_timeout: float = 120.0

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9]{0,7}", self.name):
            raise ClusterError(f"cluster name {self.name!r}: use 1-8 lowercase letters/digits")
        # Unix sockets live under the run directory (the kubelet's pod-resources socket
        # is its longest, about 45 characters below it); a path is at most 107 bytes.
        if len(str(self.run_dir.resolve())) > _MAX_RUN_DIR:
            raise ClusterError(
                f"state directory {self.state_dir} is too deep: unix socket paths under "
                f"{self.run_dir} would exceed the kernel's limit; use a path of at most "
                f"{_MAX_RUN_DIR - 4} characters"
            )

    # -- derived names and addresses ---------------------------------------------------

    @property
    def node_bridge(self) -> str:
        return f"{self.name}-node"

    @property
    def cni_bridge(self) -> str:
        return f"{self.name}-cni0"

    @property
    def cni_network(self) -> str:
        return f"{self.name}-pods"

    @property
    def guard_chain(self) -> str:
        return f"KNN-GUARD-{self.name.upper()}"

    @property
    def dns_ip(self) -> str:
        """The tenth address of the service range (kubeadm's convention)."""
        return str(ipaddress.ip_network(self.service_cidr).network_address + 10)

    @property
    def pod_gateway(self) -> str:
        return str(next(ipaddress.ip_network(self.pod_cidr).hosts()))

    @property
    def admin_kubeconfig(self) -> Path:
        return self.kubeconfig_path or self.state_dir / "kubeconfig"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run_dir(self) -> Path:
        """Everything :func:`sweep` removes: state of containerd, kubelet, CNI, PKI."""
        return self.state_dir / "run"

    @property
    def containerd_socket(self) -> Path:
        return self.run_dir / "containerd" / "containerd.sock"

    def save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        raw = asdict(self)
        raw["state_dir"] = str(self.state_dir)
        raw["kubeconfig_path"] = None if self.kubeconfig_path is None else str(self.kubeconfig_path)
        raw["addons"] = list(self.addons)
        tmp = self.state_dir / f".{CONFIG_FILE}.tmp"
        tmp.write_text(json.dumps(raw, indent=2) + "\n")
        tmp.replace(self.state_dir / CONFIG_FILE)

    @classmethod
    def load(cls, state_dir: Path) -> ClusterConfig | None:
        try:
            raw = json.loads((state_dir / CONFIG_FILE).read_text())
        except FileNotFoundError:
            return None
        raw["state_dir"] = Path(raw["state_dir"])
        if raw.get("kubeconfig_path"):
            raw["kubeconfig_path"] = Path(raw["kubeconfig_path"])
        raw["addons"] = tuple(raw.get("addons", ()))
        return cls(**raw)


class Component(Protocol):
    """One part of the stack: started in order, stopped in reverse."""

    name: str

    def start(self, cluster: Cluster) -> None: ...

    def stop(self, cluster: Cluster) -> None: ...


def _say_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the cluster --------------------------------------------------------------------------


class Cluster(Lifecycle):
    """The whole stack for the lifetime of a ``with`` block (or start()/stop())."""

    def __init__(
        self, config: ClusterConfig, *, echo: Callable[[str], None] | None = _say_stderr
    ) -> None:
        self.config = config
        self._echo = echo
        node: list[Component] = [
            HostNetwork(),
            ControlPlaneComponent(),
            Containerd(),
            Kubelet(),
            KubeProxy(),
        ]
        self._components = node + [COMPONENTS[a]() for a in config.addons]
        self._started: list[Component] = []
        self._lock: IO[str] | None = None
        self.control_plane: ControlPlane | None = None
        self.ca: CertificateAuthority | None = None
        self.pki: PKI | None = None
        self.binaries: dict[str, Path] = {}
        self.processes: dict[str, ManagedProcess] = {}
        # Image repository -> the name (with tag) imported for this run.
        self.image_names: dict[str, str] = {}
        # Component name -> URL of what it serves on this machine (e.g. prometheus).
        self.endpoints: dict[str, str] = {}
        self.timings: dict[str, float] = {}
        self.startup_seconds = 0.0

    # -- public ---------------------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        return self.config.admin_kubeconfig

    def kubectl(self) -> Kubectl:
        return Kubectl(self.kubeconfig, binary=self.binaries.get("kubectl"))

    def add_component(self, component: Component) -> None:
        """Adds a component to start after the others (before start())."""
        if self._started:
            raise ClusterError("add components before the cluster starts")
        self._components.append(component)

    def check_running(self) -> None:
        """Raises :class:`ProcessError`, with its log tail, if any process has exited."""
        if self.control_plane is not None:
            self.control_plane.check_running()
        for proc in self.processes.values():
            proc.check_running()

    def start(self) -> None:
        if self._started:
            raise ClusterError("cluster is already started")
        self.binaries = ensure_tools(
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kubectl",
            "kubelet",
            "kube-proxy",
            "containerd",
            "ctr",
            "containerd-shim-runc-v2",
            "runc",
            *(["coredns"] if "dns" in self.config.addons else []),
            *(["prometheus"] if "prometheus" in self.config.addons else []),
            *(["traefik"] if "gateway" in self.config.addons else []),
        )
        self.binaries["cni"] = cni_bin_dir()
        self._lock = acquire_host(self.config)
        _live.register(self)
        began = time.monotonic()
        try:
            # Leftovers of a crashed earlier run of this same cluster go first.
            sweep(self.config, echo=None)
            self.config.save()
            for component in self._components:
                t0 = time.monotonic()
                self._started.append(component)
                component.start(self)
                self.timings[component.name] = time.monotonic() - t0
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        self.say(
            f"cluster ready in {self.startup_seconds:.1f}s ("
            + ", ".join(f"{n} {t:.1f}s" for n, t in self.timings.items())
            + f"); export KUBECONFIG={self.kubeconfig}"
        )

    def stop(self) -> None:
        """Stops every component in reverse order, then sweeps the host. Idempotent."""
        errors: list[str] = []
        for component in reversed(self._started):
            try:
                component.stop(self)
            except Exception as err:  # keep stopping the rest
                errors.append(f"{component.name}: {err}")
        self._started = []
        try:
            sweep(self.config, echo=self._echo)
        except Exception as err:
            errors.append(f"sweep: {err}")
        release_host(self._lock)
        self._lock = None
        _live.unregister(self)
        if errors:
            raise ClusterError("errors while stopping: " + "; ".join(errors))

    # -- for components -------------------------------------------------------------------

    def say(self, message: str) -> None:
        if self._echo is not None:
            self._echo(message)

    def spawn(
        self, name: str, argv: Sequence[str], *, env: dict[str, str] | None = None
    ) -> ManagedProcess:
        proc = ManagedProcess(name, argv, self.config.log_dir / f"{name}.log", env=env)
        self.processes[name] = proc
        proc.start()
        _record_pid(self.config, name, proc.pid)
        return proc

    def stop_process(self, name: str, timeout: float = 15.0) -> None:
        proc = self.processes.pop(name, None)
        if proc is not None:
            proc.stop(timeout)
        (self.config.run_dir / "pids" / f"{name}.pid").unlink(missing_ok=True)

    def wait_until(
        self, what: str, check: Callable[[], bool], *, proc: ManagedProcess | None = None
    ) -> None:
        deadline = time.monotonic() + self.config.startup_timeout
        while True:
            if proc is not None:
                proc.check_running()
            if check():
                return
            if time.monotonic() > deadline:
                tail = f"; last lines of {proc.log_path}:\n{proc.stderr_tail()}" if proc else ""
                raise ClusterError(
                    f"{what}: not ready after {self.config.startup_timeout:.0f}s{tail}"
                )
            time.sleep(0.2)

    def issue(
        self,
        name: str,
        common_name: str,
        *,
        org: str = "",
        server_ips: tuple[str, ...] = (),
        dns: tuple[str, ...] = (),
    ) -> tuple[Path, Path]:
        """Issues a certificate from the cluster CA into run/pki; returns (cert, key)."""
        assert self.ca is not None
        ck: CertKey = self.ca.issue(
            common_name,
            organizations=(org,) if org else (),
            ip_addresses=server_ips,
            dns_names=dns,
            server=bool(server_ips or dns),
            client=not (server_ips or dns),
        )
        directory = self.config.run_dir / "pki"
        directory.mkdir(parents=True, exist_ok=True)
        cert, key = directory / f"{name}.crt", directory / f"{name}.key"
        for path, data in ((cert, ck.cert_pem), (key, ck.key_pem)):
            path.touch(mode=0o600, exist_ok=True)
            path.write_bytes(data)
        return cert, key

    def component_kubeconfig(self, name: str, user: str, org: str) -> Path:
        """A kubeconfig with a client certificate for ``user`` in group ``org``."""
        assert self.ca is not None and self.control_plane is not None and self.pki is not None
        ck = self.ca.issue(user, organizations=(org,), client=True)
        return kubeconfig.write(
            self.config.run_dir / f"{name}.kubeconfig",
            kubeconfig.build(
                self.control_plane.server,
                self.pki.ca.cert_pem,
                user=user,
                client_cert_pem=ck.cert_pem,
                client_key_pem=ck.key_pem,
            ),
        )

    def node_path_env(self) -> dict[str, str]:
        """An environment whose PATH finds exactly the pinned runc and shim first."""
        link_dir = self.config.run_dir / "bin"
        link_dir.mkdir(parents=True, exist_ok=True)
        for name in ("runc", "containerd-shim-runc-v2", "ctr"):
            link = link_dir / name
            link.unlink(missing_ok=True)
            link.symlink_to(self.binaries[name])
        env = dict(os.environ)
        env["PATH"] = f"{link_dir}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
        return env

    def ctr(self, *args: str, check: bool = True, timeout: float = 300.0) -> str:
        result = subprocess.run(
            [
                str(self.binaries["ctr"]),
                "--address",
                str(self.config.containerd_socket),
                "--namespace",
                "k8s.io",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise ClusterError(f"ctr {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def containerd_ready(self) -> bool:
        if not self.config.containerd_socket.exists():
            return False
        try:
            self.ctr("version", timeout=10)
        except (ClusterError, subprocess.TimeoutExpired):
            return False
        return True

    def import_image(self, archive: Path) -> None:
        t0 = time.monotonic()
        self.ctr("images", "import", "--no-unpack=false", str(archive))
        self.say(f"imported {archive.name} in {time.monotonic() - t0:.1f}s")


# -- components ---------------------------------------------------------------------------


class HostNetwork:
    """Sysctls, the node address, traffic guards, the CNI network config."""

    name = "host"

    def start(self, cluster: Cluster) -> None:
        cfg = cluster.config
        run = cfg.run_dir
        run.mkdir(parents=True, exist_ok=True)
        saved = run / "sysctls.json"
        if not saved.exists():
            saved.write_text(json.dumps(_read_sysctls(SAVED_SYSCTLS), indent=2) + "\n")
        _write_sysctl("net.ipv4.ip_forward", "1")
        _write_sysctl("net.bridge.bridge-nf-call-iptables", "1")
        _ip("link", "add", cfg.node_bridge, "type", "bridge")
        _ip("addr", "add", f"{cfg.node_ip}/32", "dev", cfg.node_bridge)
        _ip("link", "set", cfg.node_bridge, "up")
        _install_guard(cfg)
        net_d = run / "cni" / "net.d"
        net_d.mkdir(parents=True, exist_ok=True)
        conflist = {
            "cniVersion": "1.0.0",
            "name": cfg.cni_network,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": cfg.cni_bridge,
                    "isGateway": True,
                    # Never masquerade: pod traffic has nowhere to go but this machine.
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": str(run / "cni" / "ipam"),
                        "ranges": [[{"subnet": cfg.pod_cidr, "gateway": cfg.pod_gateway}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (net_d / f"10-{cfg.cni_network}.conflist").write_text(json.dumps(conflist, indent=2))

    def stop(self, cluster: Cluster) -> None:
        pass  # sweep() undoes it, also after a crash


class ControlPlaneComponent:
    """etcd, kube-apiserver (on the node address), controller-manager, scheduler."""

    name = "control-plane"

    def start(self, cluster: Cluster) -> None:
        cfg = cluster.config
        options = Options(
            controller_manager=True,
            scheduler=True,
            startup_timeout=cfg.startup_timeout,
            bind_address=cfg.node_ip,
            service_cidr=cfg.service_cidr,
        )
        pki = PKI.generate(service_ip=options.kubernetes_service_ip, extra_ips=(cfg.node_ip,))
        cluster.pki = pki
        cluster.ca = CertificateAuthority.load(pki.ca)
        ca_file = cfg.run_dir / "pki" / "ca.crt"
        ca_file.parent.mkdir(parents=True, exist_ok=True)
        ca_file.write_bytes(pki.ca.cert_pem)
        # The apiserver's client identity towards kubelets (logs, exec, port-forward),
        # authorized by the kubelet through a SubjectAccessReview: see _KUBELET_API_RBAC.
        kcert, kkey = cluster.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client")
        options = Options(
            **{
                **asdict(options),
                "apiserver_args": (
                    f"--kubelet-client-certificate={kcert}",
                    f"--kubelet-client-key={kkey}",
                    f"--kubelet-certificate-authority={ca_file}",
                    "--kubelet-preferred-address-types=InternalIP",
                    "--endpoint-reconciler-type=lease",
                ),
            }
        )
        cp = ControlPlane(
            options,
            log_dir=cfg.log_dir,
            kubeconfig_path=cfg.admin_kubeconfig,
            echo=None,
            pki=pki,
        )
        cluster.control_plane = cp
        try:
            cp.start()
        except ControlPlaneError as err:
            raise ClusterError(str(err)) from None
        cluster.timings.update({f"  {k}": v for k, v in cp.timings.others.items()})
        for name, pid in cp.processes.items():
            _record_pid(cfg, name, pid)
        cluster.kubectl().apply_manifest(_KUBELET_API_RBAC)

    def stop(self, cluster: Cluster) -> None:
        if cluster.control_plane is not None:
            cluster.control_plane.stop()
            cluster.control_plane = None


_KUBELET_API_RBAC: Final = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "knn:apiserver-kubelet-client"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:kubelet-api-admin"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: kube-apiserver-kubelet-client}
"""


class Containerd:
    """containerd v2 with runc and CNI; its state (and pod netns) under run/containerd."""

    name = "containerd"

    def start(self, cluster: Cluster) -> None:
        cfg = cluster.config
        base = cfg.run_dir / "containerd"
        base.mkdir(parents=True, exist_ok=True)
        config_path = base / "config.toml"
        config_path.write_text(
            _containerd_config(cfg, base, cluster.binaries["runc"], cluster.binaries["cni"])
        )
        proc = cluster.spawn(
            "containerd",
            [str(cluster.binaries["containerd"]), "--config", str(config_path)],
            env=cluster.node_path_env(),
        )
        cluster.wait_until("containerd", cluster.containerd_ready, proc=proc)
        cluster.import_image(images.pause_image())

    def stop(self, cluster: Cluster) -> None:
        # Pods first, through containerd (the kubelet is already stopped): kill and
        # delete every task and container, so the shims exit.
        if "containerd" in cluster.processes and cluster.containerd_ready():
            _remove_all_containers(cluster)
        cluster.stop_process("containerd")


class Kubelet:
    name = "kubelet"

    def start(self, cluster: Cluster) -> None:
        cfg = cluster.config
        base = cfg.run_dir / "kubelet"
        base.mkdir(parents=True, exist_ok=True)
        kubeconfig_path = cluster.component_kubeconfig(
            "kubelet", f"system:node:{cfg.node_name}", "system:nodes"
        )
        cert, key = cluster.issue(
            "kubelet-serving", cfg.node_name, server_ips=(cfg.node_ip,), dns=(cfg.node_name,)
        )
        # Pods get only cluster DNS: no search domains or resolvers from the host.
        resolv = base / "resolv.conf"
        resolv.write_text("")
        config_path = base / "config.yaml"
        config_path.write_text(
            yaml.safe_dump(_kubelet_config(cfg, base, cert, key, resolv), sort_keys=False)
        )
        proc = cluster.spawn(
            "kubelet",
            [
                str(cluster.binaries["kubelet"]),
                f"--config={config_path}",
                f"--kubeconfig={kubeconfig_path}",
                f"--root-dir={base / 'root'}",
                f"--hostname-override={cfg.node_name}",
                f"--node-ip={cfg.node_ip}",
                "--v=1",
            ],
            env=cluster.node_path_env(),
        )
        kubectl = cluster.kubectl()

        def node_ready() -> bool:
            result = kubectl.run(
                "get",
                "node",
                cfg.node_name,
                "-o",
                "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                check=False,
            )
            return result.stdout.strip() == "True"

        cluster.wait_until(f"node {cfg.node_name} Ready", node_ready, proc=proc)

    def stop(self, cluster: Cluster) -> None:
        cluster.stop_process("kubelet")


class KubeProxy:
    name = "kube-proxy"

    def start(self, cluster: Cluster) -> None:
        cfg = cluster.config
        kubeconfig_path = cluster.component_kubeconfig(
            "kube-proxy", "system:kube-proxy", "system:node-proxier"
        )
        healthz, metrics = free_loopback_ports(2)
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "hostnameOverride": cfg.node_name,
            "clusterCIDR": cfg.pod_cidr,
            "clientConnection": {"kubeconfig": str(kubeconfig_path)},
            "bindAddress": "127.0.0.1",
            "healthzBindAddress": f"127.0.0.1:{healthz}",
            "metricsBindAddress": f"127.0.0.1:{metrics}",
            # Root here lacks CAP_SYS_RESOURCE: a negative oom_score_adj fails.
            "oomScoreAdj": 0,
            # Leave the host's conntrack sysctls alone.
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
            "iptables": {
                # Would set net.ipv4.conf.all.route_localnet=1 (NodePorts on 127.0.0.1).
                "localhostNodePorts": False,
                "masqueradeAll": False,
                "syncPeriod": "10s",
                "minSyncPeriod": "1s",
            },
            "nodePortAddresses": [f"{cfg.node_ip}/32"],
        }
        path = cfg.run_dir / "kube-proxy.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        proc = cluster.spawn(
            "kube-proxy", [str(cluster.binaries["kube-proxy"]), f"--config={path}", "--v=1"]
        )
        cluster.wait_until(
            "kube-proxy /healthz",
            lambda: http_ok(f"http://127.0.0.1:{healthz}/healthz"),
            proc=proc,
        )

    def stop(self, cluster: Cluster) -> None:
        cluster.stop_process("kube-proxy")


class ClusterDNS:
    """CoreDNS as a Deployment in kube-system behind the kube-dns Service."""

    name = "dns"

    def start(self, cluster: Cluster) -> None:
        cfg = cluster.config
        archive, image = images.coredns_image(cluster.binaries["coredns"])
        cluster.import_image(archive)
        kubectl = cluster.kubectl()
        kubectl.apply_manifest(_coredns_manifest(image, cfg.dns_ip, cfg.cluster_domain))
        kubectl.run(
            "-n",
            "kube-system",
            "rollout",
            "status",
            "deployment/coredns",
            f"--timeout={int(cfg.startup_timeout)}s",
            timeout=cfg.startup_timeout + 10,
        )

    def stop(self, cluster: Cluster) -> None:
        pass  # its pod goes with the node


COMPONENTS: Final[dict[str, Callable[[], Component]]] = {
    "dns": ClusterDNS,
    "images": ProductImages,
    "storage": LocalStorage,
    "operator": InClusterOperator,
    "prometheus": Prometheus,
    "gateway": Gateway,
}
# What `make up` runs: the whole product.
FULL_STACK: Final = ("dns", "storage", "images", "operator", "prometheus", "gateway")


# -- configuration documents -----------------------------------------------------------------


def _containerd_config(cfg: ClusterConfig, base: Path, runc: Path, cni_dir: Path) -> str:
    sock = cfg.containerd_socket
    return f"""\
# Generated by knn_devtools.cluster. containerd v2.4 config schema 4.
version = 4
root = "{base / "root"}"
state = "{base / "state"}"

[plugins]
  [plugins."io.containerd.server.v1.grpc"]
    address = "{sock}"
  [plugins."io.containerd.server.v1.ttrpc"]
    address = "{sock}.ttrpc"
  [plugins."io.containerd.internal.v1.opt"]
    path = "{base / "opt"}"
  [plugins."io.containerd.nri.v1.nri"]
    disable = true
  [plugins."io.containerd.cri.v1.images"]
    snapshotter = "overlayfs"
    [plugins."io.containerd.cri.v1.images".pinned_images]
      sandbox = "{images.PAUSE_IMAGE}"
  [plugins."io.containerd.cri.v1.runtime"]
    enable_selinux = false
    # Root here lacks CAP_SYS_RESOURCE: a negative oom_score_adj (pause: -998) fails
    # in runc; clamp it to ours.
    restrict_oom_score_adj = true
    # Pod network namespaces under our state directory, not /var/run/netns.
    netns_mounts_under_state_dir = true
    [plugins."io.containerd.cri.v1.runtime".containerd]
      default_runtime_name = "runc"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
          BinaryName = "{runc}"
          Root = "{base / "runc"}"
          SystemdCgroup = false
    [plugins."io.containerd.cri.v1.runtime".cni]
      bin_dirs = ["{cni_dir}"]
      conf_dir = "{cfg.run_dir / "cni" / "net.d"}"
      max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri"]
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
"""


def _kubelet_config(
    cfg: ClusterConfig, base: Path, cert: Path, key: Path, resolv: Path
) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # This host mounts cgroup v1 controllers; kubelet >= 1.35 refuses v1 by default.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "containerRuntimeEndpoint": f"unix://{cfg.containerd_socket}",
        "address": cfg.node_ip,
        "port": cfg.kubelet_port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 0,
        "tlsCertFile": str(cert),
        "tlsPrivateKeyFile": str(key),
        # Never anonymous: client certificates from the cluster CA, bearer tokens
        # checked with the apiserver, every request authorized by it (SAR).
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(cfg.run_dir / "pki" / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "clusterDomain": cfg.cluster_domain,
        "clusterDNS": [cfg.dns_ip],
        "resolvConf": str(resolv),
        "podLogsDir": str(base / "pod-logs"),
        "volumePluginDir": str(base / "volume-plugins"),
        "failSwapOn": False,
        "cgroupsPerQOS": True,
        "enforceNodeAllocatable": ["pods"],
        "serializeImagePulls": False,
        # A shared disk: no evictions, and never collect the locally imported images
        # (there is no registry to pull them from again).
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "maxPods": 50,
        "nodeStatusUpdateFrequency": "4s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
    }


def _coredns_manifest(image: str, dns_ip: str, domain: str) -> str:
    corefile = f""".:53 {{
    errors
    health :8080
    ready :8181
    kubernetes {domain} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
    cache 5
    loadbalance
}}
"""
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "coredns", "namespace": "kube-system"},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "system:coredns"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["services", "pods", "namespaces"],
                    "verbs": ["list", "watch"],
                },
                {
                    "apiGroups": ["discovery.k8s.io"],
                    "resources": ["endpointslices"],
                    "verbs": ["list", "watch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:coredns"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:coredns",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}],
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "coredns", "namespace": "kube-system"},
            "data": {"Corefile": corefile},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "coredns",
                "namespace": "kube-system",
                "labels": {"k8s-app": "kube-dns"},
            },
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"k8s-app": "kube-dns"}},
                "template": {
                    "metadata": {"labels": {"k8s-app": "kube-dns"}},
                    "spec": {
                        "serviceAccountName": "coredns",
                        "dnsPolicy": "Default",
                        "priorityClassName": "system-cluster-critical",
                        "containers": [
                            {
                                "name": "coredns",
                                "image": image,
                                "imagePullPolicy": "Never",
                                "args": ["-conf", "/etc/coredns/Corefile"],
                                "ports": [
                                    {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                    {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                                ],
                                "readinessProbe": {
                                    "httpGet": {"path": "/ready", "port": 8181},
                                    "periodSeconds": 1,
                                },
                                "livenessProbe": {
                                    "httpGet": {"path": "/health", "port": 8080},
                                    "periodSeconds": 10,
                                },
                                "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}},
                                "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns"}],
                            }
                        ],
                        "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "kube-dns",
                "namespace": "kube-system",
                "labels": {"k8s-app": "kube-dns"},
            },
            "spec": {
                "clusterIP": dns_ip,
                "selector": {"k8s-app": "kube-dns"},
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                ],
            },
        },
    ]
    return yaml.safe_dump_all(docs, sort_keys=False)


# -- host-wide ownership ---------------------------------------------------------------------


def acquire_host(cfg: ClusterConfig) -> IO[str]:
    """Takes the machine's node lock for this cluster, or refuses naming the holder."""
    if os.geteuid() != 0:
        raise ClusterError(
            "the local cluster needs root: it creates network interfaces, iptables "
            "chains, mounts and cgroups"
        )
    # The lock first: a cluster of ours from another checkout or tools cache runs other
    # binaries, so only the lock's owner file can name it and say how to stop it.
    HOST_LOCK_DIR.mkdir(parents=True, exist_ok=True)
    lock = open(HOST_LOCK, "a+")  # noqa: SIM115 - held for the cluster's lifetime
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        try:
            owner = json.loads(HOST_OWNER.read_text())
        except (OSError, ValueError):
            owner = {}
        where = owner.get("state_dir", "?")
        raise ClusterError(
            f"another local cluster runs on this machine (state {where}, pid "
            f"{owner.get('pid', '?')}); a node owns host-wide iptables chains, so only one "
            f"runs at a time. Stop it first: `python -m knn_devtools.cluster down --dir "
            f"{Path(where).parent if where != '?' else '.local'}` (or `make down` for "
            f"the one `make up`/`make demo` started)."
        ) from None
    foreign = _foreign_node_processes()
    if foreign:
        release_host(lock)
        raise ClusterError(
            f"another Kubernetes node runs on this machine, not from this tools cache "
            f"({bin_dir()}): "
            + "; ".join(foreign[:3])
            + ". Its kubelet and kube-proxy share the host's kubepods cgroups and KUBE-* "
            "iptables chains with ours; stop it first (if a crashed knn_devtools cluster "
            "with another KNN_CACHE_DIR left it: `python -m knn_devtools.cluster down "
            "--dir` its state directory)."
        )
    HOST_OWNER.write_text(json.dumps({"pid": os.getpid(), "state_dir": str(cfg.state_dir)}))
    return lock


def release_host(lock: IO[str] | None) -> None:
    """Releases the node lock and removes its files: nothing of ours stays in /run."""
    if lock is None:
        return
    HOST_OWNER.unlink(missing_ok=True)
    # Still holding the lock: nobody else can be between open and flock on this file
    # (they would have failed with LOCK_NB), so unlinking it cannot split ownership.
    HOST_LOCK.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        HOST_LOCK_DIR.rmdir()
    fcntl.flock(lock, fcntl.LOCK_UN)
    lock.close()


# -- cleanup -------------------------------------------------------------------------------


def sweep(cfg: ClusterConfig, *, echo: Callable[[str], None] | None = _say_stderr) -> None:
    """Removes everything this cluster made on the host, whether or not its owner
    is alive: processes (by recorded pid, and shims by socket), containers (by
    cgroup), iptables chains, mounts and interfaces by name, cgroups, saved sysctls,
    then the run directory. Idempotent; safe on a clean host."""
    run = cfg.run_dir
    pids = run / "pids"
    for pidfile in sorted(pids.glob("*.pid")) if pids.is_dir() else []:
        _kill_recorded(pidfile)
    # Shims started by our containerd carry its socket in their command line.
    for pid in _pids_matching(lambda argv: _is_our_shim(argv, cfg)):
        _kill(pid)
    # The kubepods cgroups and the KUBE-* chains are host-wide names: with a node of
    # someone else's running they are its too, and are left alone (a warning says so).
    foreign = _foreign_node_processes()
    if foreign:
        if echo is not None:
            echo(
                "another Kubernetes node runs here; leaving kubepods cgroups and KUBE-* "
                f"chains alone: {foreign[0]}"
            )
    else:
        # Container processes, wherever their shims went: every pid in the node's cgroups.
        for pid in _pids_in_cgroups():
            _kill(pid)
        kube_proxy = _cached_binary("kube-proxy")
        if kube_proxy is not None and _has_chain("KUBE-SERVICES"):
            subprocess.run(
                [str(kube_proxy), "--cleanup", "--v=0"],
                capture_output=True,
                check=False,
                timeout=60,
            )
        _remove_kubelet_chains()
    _remove_guard(cfg)
    for mount in _mounts_under(run):
        subprocess.run(["umount", mount], capture_output=True, check=False)
        if os.path.ismount(mount):
            subprocess.run(["umount", "-l", mount], capture_output=True, check=False)
    for link in _links_with_master(cfg.cni_bridge):
        _ip("link", "del", link, check=False)
    for name in (cfg.cni_bridge, cfg.node_bridge):
        _ip("link", "del", name, check=False)
    if not foreign:
        _remove_cgroups()
    saved = run / "sysctls.json"
    if saved.exists():
        for key, value in json.loads(saved.read_text()).items():
            _write_sysctl(key, value)
        saved.unlink()
    _remove_host_paths(cfg)
    if run.exists():
        shutil.rmtree(run, ignore_errors=True)
        if run.exists():
            raise ClusterError(f"cannot remove {run} (still mounted?)")
    (cfg.state_dir / CONFIG_FILE).unlink(missing_ok=True)
    if echo is not None:
        echo(f"cluster {cfg.name}: host cleaned ({cfg.state_dir})")


def _foreign_node_processes() -> list[str]:
    """kubelet and kube-proxy processes that no cluster of ours started (ours run
    the binaries of the tools cache)."""
    ours = str(bin_dir())
    found = []
    for pid in _pids_matching(
        lambda argv: Path(argv[0]).name.split("-v")[0] in ("kubelet", "kube-proxy")
    ):
        argv = _cmdline(pid)
        if argv and not argv[0].startswith(ours):
            found.append(f"pid {pid} {' '.join(argv)[:120]}")
    return found


def _record_pid(cfg: ClusterConfig, name: str, pid: int) -> None:
    directory = cfg.run_dir / "pids"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.pid").write_text(f"{pid}\n")


def _kill_recorded(pidfile: Path) -> None:
    name = pidfile.stem
    try:
        pid = int(pidfile.read_text())
    except (OSError, ValueError):
        return
    # Only if it still is that program: pids are recycled.
    argv = _cmdline(pid)
    if argv and name in Path(argv[0]).name:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        _kill(pid)
    pidfile.unlink(missing_ok=True)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)
    for _ in range(50):
        if not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
            return
        time.sleep(0.02)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _pids_matching(pred: Callable[[list[str]], bool]) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            argv = _cmdline(int(entry.name))
            if argv and pred(argv):
                found.append(int(entry.name))
    return found


def _is_our_shim(argv: list[str], cfg: ClusterConfig) -> bool:
    return Path(argv[0]).name.startswith("containerd-shim") and str(
        cfg.containerd_socket
    ) in " ".join(argv)


def _cgroup_dirs() -> Iterator[Path]:
    if not _CGROUP_ROOT.is_dir():
        return
    for hierarchy in sorted(_CGROUP_ROOT.iterdir()):
        for name in _CGROUP_NAMES:
            d = hierarchy / name
            if d.is_dir():
                yield d


def _cgroup_tree(top: Path) -> list[Path]:
    """``top`` and every cgroup below it, deepest first; tolerates cgroups vanishing."""
    found = [Path(dirpath) for dirpath, _, _ in os.walk(top, onerror=lambda _: None)]
    return sorted(found, key=lambda p: -len(p.parts))


def _pids_in_cgroups() -> set[int]:
    pids: set[int] = set()
    for top in _cgroup_dirs():
        for d in _cgroup_tree(top):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(x) for x in (d / "cgroup.procs").read_text().split())
    return pids


def _remove_cgroups() -> None:
    for top in _cgroup_dirs():
        for d in _cgroup_tree(top):
            for _ in range(20):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)  # a killed task leaves its cgroup a moment later


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve()) + "/"
    mounts = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        target = line.split()[1].replace("\\040", " ")
        if target.startswith(prefix) or target == prefix[:-1]:
            mounts.append(target)
    return sorted(set(mounts), key=lambda m: -m.count("/"))


def _links_with_master(bridge: str) -> list[str]:
    result = subprocess.run(
        ["ip", "-o", "link", "show", "master", bridge], capture_output=True, text=True, check=False
    )
    links = []
    for line in result.stdout.splitlines():
        parts = line.split(": ")
        if len(parts) > 1:
            links.append(parts[1].split("@")[0])
    return links


def _remove_host_paths(cfg: ClusterConfig) -> None:
    (_DEVICE_PLUGINS / "kubelet.sock").unlink(missing_ok=True)
    for d in (_DEVICE_PLUGINS, _DEVICE_PLUGINS.parent):
        with contextlib.suppress(OSError):
            d.rmdir()
    prefix = str(cfg.run_dir.resolve())
    if _CONTAINER_LOGS.is_dir():
        for link in _CONTAINER_LOGS.iterdir():
            with contextlib.suppress(OSError):
                if link.is_symlink() and str(link.readlink()).startswith(prefix):
                    link.unlink()
    # libcni's cache (containerd's loopback network too): ours name our network, or a
    # pod network namespace under our run directory.
    if _CNI_RESULTS.is_dir():
        for result in _CNI_RESULTS.iterdir():
            try:
                cached = json.loads(result.read_text())
            except (OSError, ValueError):
                continue
            if cached.get("networkName") == cfg.cni_network or str(
                cached.get("netns", "")
            ).startswith(prefix + "/"):
                result.unlink(missing_ok=True)
    for d in (_CONTAINER_LOGS, _CNI_RESULTS, _CNI_RESULTS.parent):
        with contextlib.suppress(OSError):
            d.rmdir()  # only if empty: someone else's runtime may use it
    _remove_stale_runtime_files()


def _bound_unix_sockets() -> set[str]:
    """Paths of the unix sockets some process has bound (this network namespace)."""
    bound = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 8 and fields[7].startswith("/"):
                bound.add(fields[7])
    return bound


def _remove_stale_runtime_files() -> None:
    """containerd's shim sockets, task fifos and runc state under /run/containerd, and
    buildkitd's /run/buildkit socket, are fixed paths: remove the sockets nobody
    listens on any more (a killed shim cannot remove its own) and empty directories.
    A live runtime's files stay."""
    bound = _bound_unix_sockets()
    for base in _RUNTIME_DIRS:
        if not base.is_dir():
            continue
        for dirpath, _, filenames in os.walk(base, topdown=False, onerror=lambda _: None):
            d = Path(dirpath)
            for name in filenames:
                path = d / name
                with contextlib.suppress(OSError):
                    if stat.S_ISSOCK(path.lstat().st_mode) and str(path) not in bound:
                        path.unlink()
            with contextlib.suppress(OSError):
                d.rmdir()


def _cached_binary(tool: str) -> Path | None:
    try:
        return ensure_tools(tool, build=False)[tool]
    except Exception:
        return None


# -- iptables ------------------------------------------------------------------------------


def _iptables(
    *args: str, check: bool = False, ipv6: bool = False
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["ip6tables" if ipv6 else "iptables", "-w", "5", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if check and result.returncode != 0:
        raise ClusterError(f"iptables {' '.join(args)}: {result.stderr.strip()}")
    return result


def _has_chain(chain: str, table: str = "filter") -> bool:
    return (
        _iptables("-t", table, "-S", chain).returncode == 0
        or _iptables("-t", "nat", "-S", chain).returncode == 0
    )


def _external_interfaces() -> list[str]:
    result = subprocess.run(
        ["ip", "-o", "route", "show", "default"], capture_output=True, text=True, check=False
    )
    devs = []
    for line in result.stdout.splitlines():
        words = line.split()
        if "dev" in words:
            devs.append(words[words.index("dev") + 1])
    return sorted(set(devs))


def _guard_rules(cfg: ClusterConfig, dev: str) -> list[tuple[str, str, list[str]]]:
    """(table, hook chain, rule) triples. mangle POSTROUTING sees the interface a
    packet really leaves by (after kube-proxy's DNAT), unlike filter OUTPUT."""
    return [
        ("mangle", "POSTROUTING", ["-o", dev, "-s", cfg.pod_cidr, "-j", "DROP"]),
        ("mangle", "POSTROUTING", ["-o", dev, "-d", cfg.pod_cidr, "-j", "DROP"]),
        ("mangle", "POSTROUTING", ["-o", dev, "-d", cfg.service_cidr, "-j", "DROP"]),
        ("filter", "FORWARD", ["-i", dev, "-d", cfg.pod_cidr, "-j", "DROP"]),
        # The apiserver and the kubelet listen on the node address: not from outside.
        ("filter", "INPUT", ["-i", dev, "-d", cfg.node_ip, "-j", "DROP"]),
    ]


def _install_guard(cfg: ClusterConfig) -> None:
    chain = cfg.guard_chain
    for dev in _external_interfaces():
        for table, hook, rule in _guard_rules(cfg, dev):
            sub = f"{chain}-{hook[:4]}"
            if _iptables("-t", table, "-S", sub).returncode != 0:
                _iptables("-t", table, "-N", sub, check=True)
                _iptables("-t", table, "-I", hook, "1", "-j", sub, check=True)
            _iptables("-t", table, "-A", sub, *rule, check=True)


def _remove_guard(cfg: ClusterConfig) -> None:
    for table, hook in (("mangle", "POSTROUTING"), ("filter", "FORWARD"), ("filter", "INPUT")):
        sub = f"{cfg.guard_chain}-{hook[:4]}"
        while _iptables("-t", table, "-D", hook, "-j", sub).returncode == 0:
            pass
        _iptables("-t", table, "-F", sub)
        _iptables("-t", table, "-X", sub)


def _remove_kubelet_chains() -> None:
    for ipv6 in (False, True):
        for hook in ("INPUT", "OUTPUT"):
            while (
                _iptables("-t", "filter", "-D", hook, "-j", "KUBE-FIREWALL", ipv6=ipv6).returncode
                == 0
            ):
                pass
        for table in ("filter", "nat", "mangle"):
            for chain in _KUBELET_CHAINS:
                _iptables("-t", table, "-F", chain, ipv6=ipv6)
                _iptables("-t", table, "-X", chain, ipv6=ipv6)


# -- small helpers ---------------------------------------------------------------------------


def _ip(*args: str, check: bool = True) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise ClusterError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def _sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


def _read_sysctls(keys: Sequence[str]) -> dict[str, str]:
    values = {}
    for key in keys:
        with contextlib.suppress(OSError):
            values[key] = _sysctl_path(key).read_text().strip()
    return values


def _write_sysctl(key: str, value: str) -> None:
    path = _sysctl_path(key)
    try:
        if path.read_text().strip() != value:
            path.write_text(value)
    except OSError as err:
        raise ClusterError(f"cannot set {key}={value}: {err}") from None


def _remove_all_containers(cluster: Cluster) -> None:
    """Kills and deletes every task and container (the pods) so their shims exit."""
    for task in cluster.ctr("tasks", "ls", "-q", check=False).split():
        cluster.ctr("tasks", "delete", "--force", task, check=False)
    containers = cluster.ctr("containers", "ls", "-q", check=False).split()
    if containers:
        cluster.ctr("containers", "delete", *containers, check=False)


__all__ = [
    "COMPONENTS",
    "FULL_STACK",
    "Cluster",
    "ClusterConfig",
    "ClusterError",
    "Component",
    "host_snapshot",
    "sweep",
]


# -- process-wide safety net: SIGTERM/SIGHUP or interpreter exit stop live clusters ------------

_live: SafetyNet[Cluster] = SafetyNet()


# -- what a cluster leaves on the host (for the clean-up test) --------------------------------


def host_snapshot(cfg: ClusterConfig) -> dict[str, list[str]]:
    """What :func:`sweep` must leave as it found: processes naming the state
    directory, mounts, network interfaces, iptables chains, cgroups the node uses,
    sysctls, and the fixed host paths the node's programs write to."""
    state = str(cfg.state_dir.resolve())
    snap: dict[str, list[str]] = {}
    snap["processes"] = sorted(
        f"{pid} {' '.join(_cmdline(pid))[:200]}"
        for pid in _pids_matching(lambda argv: any(state in a for a in argv))
    )
    snap["mounts"] = sorted(
        line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()
    )
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True)
    snap["links"] = sorted(
        line.split(": ")[1].split("@")[0] for line in links.stdout.splitlines() if ": " in line
    )
    chains = []
    for tool in ("iptables-save", "ip6tables-save"):
        out = subprocess.run([tool], capture_output=True, text=True, check=False).stdout
        table = ""
        for line in out.splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":") and line[1:].split()[0] not in _BUILTIN_CHAINS:
                # Built-in chains show once a table is first used (the kubelet loads
                # ip6tables' tables); iptables cannot unload a table again.
                chains.append(f"{tool} {table} {line[1:].split()[0]}")
            elif line.startswith("-A"):
                chains.append(f"{tool} {table} {line}")
    snap["iptables"] = sorted(chains)
    snap["cgroups"] = sorted(str(d) for d in _cgroup_dirs())
    snap["sysctls"] = sorted(f"{k}={v}" for k, v in _read_sysctls(SAVED_SYSCTLS).items())
    paths = [
        _DEVICE_PLUGINS,
        _CONTAINER_LOGS,
        _CNI_RESULTS,
        _SHIM_SOCKETS,
        cfg.run_dir,
    ]
    snap["paths"] = sorted(str(p) for p in paths if p.exists())
    snap["paths"] += sorted(
        str(Path(dirpath) / name)
        for base in (*_RUNTIME_DIRS, _CNI_RESULTS)
        for dirpath, dirnames, filenames in os.walk(base)
        for name in [*dirnames, *filenames]
    )
    return snap


if __name__ == "__main__":
    from knn_devtools.cluster_cli import main

    sys.exit(main())
