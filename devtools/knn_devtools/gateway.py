"""Traefik as the local cluster's Gateway API data plane.

Traefik (built from its Go module, hack/build-tools.sh traefik) runs on the host
like kube-proxy and Prometheus, with only its Kubernetes Gateway provider: it
watches the Gateway API objects and the EndpointSlices through the API server and
proxies to pod IPs, which the host reaches over the node's bridge. The cluster gets
the Gateway API standard CRDs at the pinned version, a GatewayClass `traefik`, and
a Gateway `knn` in namespace `knn-gateway` accepting routes from every namespace;
its listener's port is the entry point Traefik listens on at the node's address.
The host finds the URL in ``cluster.endpoints["gateway"]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from knn_devtools.thirdparty import GATEWAY_API, go_module_dir
from knn_devtools.tools import Versions

if TYPE_CHECKING:
    from knn_devtools.cluster import Cluster

GATEWAY_CLASS: Final = "traefik"
GATEWAY_NAMESPACE: Final = "knn-gateway"
GATEWAY_NAME: Final = "knn"
LISTENER: Final = "web"
CONTROLLER: Final = "traefik.io/gateway-controller"
TRAEFIK_USER: Final = "knn:traefik"

# Traefik's documented ClusterRole for its Gateway provider
# (docs/content/reference/dynamic-configuration/kubernetes-gateway-rbac.yml of its
# module), bound to the client certificate Traefik runs with.
_RBAC: Final = f"""\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: knn-traefik-gateway
rules:
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [services, secrets, configmaps]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
- apiGroups: [gateway.networking.k8s.io]
  resources: [gatewayclasses, gateways, httproutes, grpcroutes, tcproutes, tlsroutes,
              referencegrants, backendtlspolicies]
  verbs: [get, list, watch]
- apiGroups: [gateway.networking.k8s.io]
  resources: [gatewayclasses/status, gateways/status, httproutes/status, grpcroutes/status,
              tcproutes/status, tlsroutes/status, referencegrants/status,
              backendtlspolicies/status]
  verbs: [update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: knn-traefik-gateway
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: knn-traefik-gateway
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: {TRAEFIK_USER}
"""


def gateway_manifest(port: int) -> str:
    return f"""\
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: {GATEWAY_CLASS}
spec:
  controllerName: {CONTROLLER}
---
apiVersion: v1
kind: Namespace
metadata:
  name: {GATEWAY_NAMESPACE}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: {GATEWAY_NAME}
  namespace: {GATEWAY_NAMESPACE}
spec:
  gatewayClassName: {GATEWAY_CLASS}
  listeners:
  - name: {LISTENER}
    protocol: HTTP
    port: {port}          # Traefik serves a listener on the entry point of that port
    allowedRoutes:
      namespaces:
        from: All
"""


def gateway_api_crds() -> list[str]:
    """The standard channel's CRD files at the pinned version (not its admission policy)."""
    root = go_module_dir(GATEWAY_API, Versions.load().gateway_api) / "config/crd/standard"
    return sorted(
        str(p) for p in root.glob("gateway.networking.k8s.io_*.yaml") if "vap" not in p.name
    )


class Gateway:
    name = "gateway"

    def start(self, cluster: Cluster) -> None:
        from knn_devtools.procs import free_loopback_ports, http_ok
        from knn_devtools.tools import tool_path

        binary = tool_path("traefik")
        cfg = cluster.config
        kubectl = cluster.kubectl()
        for path in gateway_api_crds():
            kubectl.run("apply", "--server-side", "-f", path)
        kubectl.run("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        kubectl.apply_manifest(_RBAC)
        port, admin = free_loopback_ports(2)
        kubectl.apply_manifest(gateway_manifest(port))
        kc = cluster.component_kubeconfig("traefik", TRAEFIK_USER, "knn:gateways")
        proc = cluster.spawn(
            "traefik",
            [
                str(binary),
                "--global.checkNewVersion=false",
                "--global.sendAnonymousUsage=false",
                # The node's address: the host and the pods both reach it there.
                f"--entryPoints.{LISTENER}.address={cfg.node_ip}:{port}",
                f"--entryPoints.traefik.address=127.0.0.1:{admin}",
                "--ping=true",
                "--api.insecure=true",
                "--providers.kubernetesGateway=true",
                f"--providers.kubernetesGateway.statusAddress.ip={cfg.node_ip}",
                "--log.level=INFO",
            ],
            env={"KUBECONFIG": str(kc), "PATH": "/usr/bin:/bin"},
        )
        cluster.wait_until(
            "traefik /ping", lambda: http_ok(f"http://127.0.0.1:{admin}/ping"), proc=proc
        )
        kubectl.run(
            "-n",
            GATEWAY_NAMESPACE,
            "wait",
            f"gateway/{GATEWAY_NAME}",
            "--for=condition=Programmed",
            f"--timeout={int(cfg.startup_timeout)}s",
            timeout=cfg.startup_timeout + 10,
        )
        cluster.endpoints["gateway"] = f"http://{cfg.node_ip}:{port}"
        cluster.endpoints["gateway-admin"] = f"http://127.0.0.1:{admin}"

    def stop(self, cluster: Cluster) -> None:
        cluster.stop_process("traefik")
        cluster.endpoints.pop("gateway", None)
        cluster.endpoints.pop("gateway-admin", None)
