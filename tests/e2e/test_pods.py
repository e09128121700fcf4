"""The node runs real pods: a Deployment's pods, a Service routing to them through
kube-proxy, cluster DNS, `kubectl logs` and `exec` through the authenticated kubelet."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from knn_devtools.cluster import Cluster
from knn_devtools.images import PYTHON_BASE_IMAGE
from knn_devtools.kubectl import Kubectl

if TYPE_CHECKING:
    from tests.e2e.e2e_support import wait_default_service_account, wait_for
else:
    from e2e_support import wait_default_service_account, wait_for

# Each pod answers with its own name.
SERVE = "mkdir /tmp/w && hostname >/tmp/w/index.html && exec python3 -m http.server -d /tmp/w 80"
FETCH = "import urllib.request as u; print(u.urlopen('http://{host}/', timeout=5).read().decode())"
WEB = """
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {ns}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: "{image}"
        imagePullPolicy: Never
        command: ["sh", "-c", "{serve}"]
        readinessProbe: {{httpGet: {{path: /, port: 80}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {ns}}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 80}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: {ns}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: client
    image: "{image}"
    imagePullPolicy: Never
    command: ["sleep", "infinity"]
"""


@pytest.fixture
def namespace(kubectl: Kubectl) -> Iterator[str]:
    name = f"pods-{uuid.uuid4().hex[:6]}"
    kubectl.run("create", "namespace", name)
    wait_default_service_account(kubectl, name)
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)


def _get(url: str, timeout: float = 3.0) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return str(response.read().decode().strip())
    except (OSError, urllib.error.URLError):
        return None


def test_deployment_behind_a_service(kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply_manifest(WEB.format(ns=namespace, image=PYTHON_BASE_IMAGE, serve=SERVE))
    kubectl.run(
        "-n", namespace, "rollout", "status", "deployment/web", "--timeout=120s", timeout=130
    )
    kubectl.run("-n", namespace, "wait", "--for=condition=Ready", "pod/client", "--timeout=60s")
    pods = kubectl.json("-n", namespace, "get", "pods", "-l", "app=web")["items"]
    names = {p["metadata"]["name"] for p in pods}
    assert len(names) == 2
    # Each pod on its own address in the pod range, answering directly...
    for pod in pods:
        assert _get(f"http://{pod['status']['podIP']}/") == pod["metadata"]["name"]
    # ...and the ClusterIP, through kube-proxy's rules, reaches both from the host.
    vip = kubectl.json("-n", namespace, "get", "service", "web")["spec"]["clusterIP"]
    seen: set[str] = set()

    def both_seen() -> bool:
        seen.add(_get(f"http://{vip}/") or "")
        return names <= seen

    wait_for("the ClusterIP to reach both pods", both_seen, timeout=60)
    # From a pod: the Service by name, through cluster DNS (short name via the search path).
    for host in ("web", f"web.{namespace}.svc.cluster.local"):
        out = kubectl.run(
            "-n",
            namespace,
            "exec",
            "client",
            "--",
            "python3",
            "-c",
            FETCH.format(host=host),
        ).stdout.strip()
        assert out in names, f"{host} answered {out!r}"
    # kubectl logs reads through the kubelet's authenticated server.
    logs = kubectl.run("-n", namespace, "logs", "deployment/web").stdout
    assert "GET / HTTP/1.1" in logs


def test_kubelet_refuses_anonymous_requests(cluster: Cluster) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    url = f"https://{cluster.config.node_ip}:{cluster.config.kubelet_port}/pods"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=5, context=ctx)
    assert refused.value.code == 401
