"""`make down` (Cluster.stop → sweep) leaves the machine as it found it.

Runs first (file order) with a cluster of its own, before the session cluster of
the other e2e tests exists: only one node runs per machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from knn_devtools import images
from knn_devtools.cluster import HOST_LOCK, HOST_OWNER, Cluster, host_snapshot, sweep

if TYPE_CHECKING:
    from tests.e2e.e2e_support import e2e_config, host_diff, wait_default_service_account
else:
    from e2e_support import e2e_config, host_diff, wait_default_service_account

POD = f"""
apiVersion: v1
kind: Pod
metadata: {{name: sleeper, namespace: default, labels: {{app: sleeper}}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {{name: pause, image: "{images.PAUSE_IMAGE}", imagePullPolicy: Never}}
---
apiVersion: v1
kind: Service
metadata: {{name: sleeper, namespace: default}}
spec:
  selector: {{app: sleeper}}
  ports: [{{port: 80, targetPort: 8080}}]
"""


def test_stop_removes_everything_the_cluster_made(short_tmp: Path) -> None:
    cfg = e2e_config(short_tmp, addons=())
    before = host_snapshot(cfg)
    with Cluster(cfg, echo=None) as cluster:
        kubectl = cluster.kubectl()
        wait_default_service_account(kubectl)
        kubectl.apply_manifest(POD)
        kubectl.run("wait", "--for=condition=Ready", "pod/sleeper", "--timeout=120s", timeout=130)
        during = host_snapshot(cfg)
        made = host_diff(before, during)
        # The node really changed the host: otherwise this test would prove nothing.
        for key in ("processes", "mounts", "links", "iptables", "cgroups"):
            assert key in made, f"a running node shows no {key}: {made}"
    after = host_snapshot(cfg)
    assert host_diff(before, after) == {}
    # The host lock's files go too (checked apart: a stale one may predate the test).
    assert not HOST_LOCK.exists() and not HOST_OWNER.exists()
    # A second sweep (what `make down` does after a crash) is harmless on a clean host.
    sweep(cfg, echo=None)
    assert host_diff(before, host_snapshot(cfg)) == {}
