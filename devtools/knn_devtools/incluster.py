"""The product inside the local cluster: shared storage, and the operator as a Deployment.

Two cluster components (see :class:`knn_devtools.cluster.Component`):

* ``storage``: a hostPath PersistentVolume ``knn-local-data`` backed by a
  directory of the node (:attr:`LocalStorage.path`), which a PVC names with
  ``volumeName`` (examples/local-cluster/products.yaml). The sample dataset is
  written there; builder Jobs write their artifacts there and serving pods read
  them, both through ``pvc://`` URIs, as on a cluster with real storage.
* ``operator``: the Helm chart of charts/knn-operator (its CRDs applied first, as
  its README says for upgrades), release ``knn-operator`` in ``knn-system``, with
  the operator image that BuildKit built from Dockerfile.operator; builder Jobs and
  serving Deployments use the serving image.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import yaml

from knn_devtools.buildkit import OPERATOR, SERVING
from knn_devtools.kubectl import Helm
from knn_devtools.tools import REPO_ROOT

if TYPE_CHECKING:
    from knn_devtools.cluster import Cluster
    from knn_devtools.kubectl import Kubectl

DATA_PV: Final = "knn-local-data"
OPERATOR_NAMESPACE: Final = "knn-system"
# The uid the product's images run as (Dockerfiles: USER 65532).
IMAGE_UID: Final = 65532


def data_dir(cluster: Cluster) -> Path:
    """The node directory behind the ``knn-local-data`` PersistentVolume."""
    return cluster.config.run_dir / "data"


def data_pv_manifest(node_path: Path | str) -> str:
    """The ``knn-local-data`` PersistentVolume: a directory of the node, which
    examples/local-cluster/products.yaml claims by name."""
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": DATA_PV, "labels": {"knn.dev/local": "data"}},
        "spec": {
            "capacity": {"storage": "20Gi"},
            "accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "hostPath": {"path": str(node_path), "type": "Directory"},
        },
    }
    return yaml.safe_dump(pv)


class LocalStorage:
    name = "storage"

    def start(self, cluster: Cluster) -> None:
        path = data_dir(cluster)
        path.mkdir(parents=True, exist_ok=True)
        # Builder pods (uid 65532, restricted profile) write artifacts here.
        os.chown(path, IMAGE_UID, IMAGE_UID)
        # The hostPath must be reachable by that uid through every parent.
        for parent in path.parents:
            if parent == cluster.config.state_dir.parent:
                break
            parent.chmod(parent.stat().st_mode | 0o011)
        cluster.kubectl().apply_manifest(data_pv_manifest(path))

    def stop(self, cluster: Cluster) -> None:
        pass  # the directory goes with the run directory


def restricted_pod_security() -> dict[str, Any]:
    """A pod securityContext that the restricted Pod Security profile admits (the demo
    namespace enforces it); with :func:`restricted_container_security`. Fresh dicts:
    yaml.safe_dump writes a dict it meets twice as an anchor and alias."""
    return {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def restricted_container_security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


CHART: Final = REPO_ROOT / "charts" / "knn-operator"
RELEASE: Final = "knn-operator"


def _image_values(key: str, image: str, pull_policy: str) -> list[str]:
    repository, _, tag = image.rpartition(":")
    return [
        f"{key}.repository={repository}",
        f"{key}.tag={tag}",
        f"{key}.pullPolicy={pull_policy}",
    ]


def chart_values(
    operator_image: str, serving_image: str, *, resync_seconds: float = 10.0
) -> list[str]:
    """``--set`` values that point the chart at images built here (never pulled)."""
    return [
        *_image_values("image", operator_image, "Never"),
        *_image_values("servingImage", serving_image, "Never"),
        f"resyncSeconds={resync_seconds:g}",
        # The e2e tests and the demo read the operator's decisions from its log.
        "kopfLogLevel=INFO",
    ]


def apply_crds(kubectl: Kubectl) -> None:
    """The chart's CRDs, server-side applied: the upgrade step of the chart's README
    (Helm installs crds/ once and never upgrades them)."""
    kubectl.run("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    kubectl.run(
        "wait",
        "--for=condition=Established",
        "crd/knnindexes.knn.dev",
        "crd/clustermodels.knn.dev",
        "--timeout=60s",
    )


def install_operator(
    kubectl: Kubectl, operator_image: str, serving_image: str, *, timeout: int
) -> None:
    """The operator as a user installs it: its CRDs, then the Helm chart of
    charts/knn-operator (Deployment, ServiceAccount, exactly the chart's RBAC);
    returns once it rolled out. Shared by the local cluster and kind
    (hack/e2e-kind.sh), so both run the same install."""
    apply_crds(kubectl)
    helm = Helm(kubectl.kubeconfig)
    args = ["upgrade", "--install", RELEASE, str(CHART), "--namespace", OPERATOR_NAMESPACE]
    args += ["--create-namespace", "--wait", f"--timeout={timeout}s"]
    for value in chart_values(operator_image, serving_image):
        args += ["--set", value]
    helm.run(*args, timeout=timeout + 30)


class InClusterOperator:
    name = "operator"

    def start(self, cluster: Cluster) -> None:
        names = cluster.image_names
        install_operator(
            cluster.kubectl(),
            names.get(OPERATOR.repository) or OPERATOR.name(),
            names.get(SERVING.repository) or SERVING.name(),
            timeout=int(cluster.config.startup_timeout),
        )

    def stop(self, cluster: Cluster) -> None:
        pass  # its pod goes with the node


# -- monitoring ------------------------------------------------------------------------

# The serving pods' label (operator/knn_operator/builders/common.py `labels`) and the
# name of their HTTP port, which also serves /metrics.
# KnnIndexes' and ClusterModels' serving pods alike.
SERVING_POD_SELECTOR: Final = "app.kubernetes.io/name in (knn-index,cluster-model)"
SERVING_PORT_NAME: Final = "http"

_PROMETHEUS_RBAC: Final = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "knn:prometheus"}
rules:
- apiGroups: [""]
  resources: [pods, services, endpoints, nodes]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "knn:prometheus"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "knn:prometheus"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "knn:prometheus"}
"""


class Prometheus:
    """Prometheus (built from its Go module with Kubernetes service discovery) on the
    host, discovering the serving pods through the apiserver (role pod, the serving
    pods' label, their ``http`` port) and scraping them at their pod IPs with
    ``honor_labels: true``, so the servers' own ``namespace``/``index``/``version``
    labels survive. Listens on the node's address; the host finds its URL in
    ``cluster.endpoints["prometheus"]``, pods as ``http://prometheus.monitoring:9090``
    (a Service whose EndpointSlice names the node's address, as for any service
    running outside the cluster)."""

    name = "prometheus"
    scrape_interval = "2s"

    def start(self, cluster: Cluster) -> None:
        from knn_devtools.procs import free_loopback_port, http_ok
        from knn_devtools.tools import tool_path

        binary = tool_path("prometheus")
        cfg = cluster.config
        assert cluster.control_plane is not None
        cluster.kubectl().apply_manifest(_PROMETHEUS_RBAC)
        cert, key = cluster.issue("prometheus", "knn:prometheus")
        base = cfg.run_dir / "prometheus"
        base.mkdir(parents=True, exist_ok=True)
        tls = {
            "ca_file": str(cfg.run_dir / "pki" / "ca.crt"),
            "cert_file": str(cert),
            "key_file": str(key),
        }
        config = {
            "global": {
                "scrape_interval": self.scrape_interval,
                "evaluation_interval": self.scrape_interval,
            },
            "scrape_configs": [
                {
                    "job_name": "knn-serving",
                    "honor_labels": True,
                    "kubernetes_sd_configs": [
                        {
                            "role": "pod",
                            "api_server": cluster.control_plane.server,
                            "tls_config": tls,
                            "selectors": [{"role": "pod", "label": SERVING_POD_SELECTOR}],
                        }
                    ],
                    "relabel_configs": [
                        {
                            "source_labels": ["__meta_kubernetes_pod_container_port_name"],
                            "regex": SERVING_PORT_NAME,
                            "action": "keep",
                        },
                        {
                            "source_labels": ["__meta_kubernetes_pod_phase"],
                            "regex": "Running",
                            "action": "keep",
                        },
                        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                    ],
                }
            ],
        }
        path = base / "prometheus.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        port = free_loopback_port()
        proc = cluster.spawn(
            "prometheus",
            [
                str(binary),
                f"--config.file={path}",
                f"--storage.tsdb.path={base / 'data'}",
                # The node's address: the host and the pods (the operator's analysis,
                # through the prometheus.monitoring Service) both reach it there.
                f"--web.listen-address={cfg.node_ip}:{port}",
                "--storage.tsdb.retention.time=1d",
            ],
        )
        url = f"http://{cfg.node_ip}:{port}"
        cluster.wait_until("prometheus /-/ready", lambda: http_ok(f"{url}/-/ready"), proc=proc)
        cluster.kubectl().apply_manifest(_prometheus_service(cfg.node_ip, port))
        cluster.endpoints["prometheus"] = url

    def stop(self, cluster: Cluster) -> None:
        cluster.stop_process("prometheus")
        cluster.endpoints.pop("prometheus", None)


PROMETHEUS_IN_CLUSTER: Final = "http://prometheus.monitoring:9090"


def _prometheus_service(node_ip: str, port: int) -> str:
    return f"""\
apiVersion: v1
kind: Namespace
metadata: {{name: monitoring}}
---
apiVersion: v1
kind: Service
metadata: {{name: prometheus, namespace: monitoring}}
spec:
  ports: [{{name: http, port: 9090, targetPort: {port}, protocol: TCP}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: prometheus-node
  namespace: monitoring
  labels: {{kubernetes.io/service-name: prometheus}}
addressType: IPv4
ports: [{{name: http, port: {port}, protocol: TCP}}]
endpoints: [{{addresses: ["{node_ip}"]}}]
"""
