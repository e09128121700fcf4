"""The e2e scenarios on a kind cluster, for machines with Docker (`make e2e-kind`).

hack/e2e-kind.sh builds the two images from the unchanged Dockerfiles with
``docker build``, creates a kind cluster, loads the images into it and calls the
subcommands here for everything that is not Docker or kind:

* ``tools``: the kind and kubectl binaries to use (kind: the pin of
  hack/versions.env built from its Go module, or $KIND; kubectl: $KUBECTL, the pinned
  build if cached, else one on PATH, else the pinned build).
* ``images``: the image names, the same content-hash tags as the local cluster's
  (knn_devtools.buildkit), and the build args those tags assume.
* ``dataset OUT``: the sample dataset of tests/e2e (20,000 x 64 float32, seed 11).
* ``install``: the PersistentVolume ``knn-local-data`` on a directory of the kind node,
  then the CRDs and the Helm chart exactly as the local cluster installs them
  (knn_devtools.incluster.install_operator; helm is built from its Go module).
* ``scenarios``: what tests/e2e/test_operator.py checks on the local cluster, through
  kubectl alone: build -> serve -> query through the Service; a bad source -> Failed
  with the builder's own message while stable keeps serving; a killed serving pod
  replaced by the Deployment controller; the operator killed mid-build resumes;
  deleting the KnnIndex lets the garbage collector remove what it owned.

The tests/e2e tier itself cannot target kind: it reads and writes the node's
directories from the host, reaches ClusterIPs through the host's kube-proxy rules,
runs Prometheus on the host and snapshots the host to check the clean-up. Here queries
go from a client pod to the Service by its DNS name, and the dataset reaches the node
with ``docker cp``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

import numpy as np
import yaml

from knn_devtools.buildkit import OPERATOR, PORTABLE_BUILD_ARGS, SERVING
from knn_devtools.incluster import (
    data_pv_manifest,
    install_operator,
    restricted_container_security,
    restricted_pod_security,
)
from knn_devtools.kubectl import Kubectl, KubectlError
from knn_devtools.synthetic import clustered
from knn_devtools.tools import REPO_ROOT, bin_dir, pinned_version, tool_path

T = TypeVar("T")

EXAMPLE: Final = REPO_ROOT / "examples" / "local-cluster" / "products.yaml"
# Same data as tests/e2e/test_operator.py, so results compare.
VECTORS, DIMENSION, SEED = 20_000, 64, 11
NAMESPACE: Final = "demo"
INDEX: Final = "products"
CLIENT_POD: Final = "knn-e2e-client"

# Runs in the client pod (the serving image has Python): POSTs argv[1] to the
# index's Service by its short DNS name, so cluster DNS and the Service are both used.
_QUERY: Final = (
    "import sys, urllib.request as u\n"
    f"r = u.Request('http://{INDEX}/v1/query', data=sys.argv[1].encode(),"
    " headers={'content-type': 'application/json'})\n"
    "print(u.urlopen(r, timeout=10).read().decode())\n"
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m knn_devtools.kind", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("tools", help="print the kind and kubectl binaries, one a line")
    sub.add_parser("images", help="print the serving and operator image names, then build args")
    ds = sub.add_parser("dataset", help="write the sample dataset (.npy)")
    ds.add_argument("out", type=Path)
    for name in ("install", "scenarios"):
        p = sub.add_parser(name)
        p.add_argument("--kubeconfig", type=Path, required=True)
        p.add_argument("--kubectl", type=Path, required=True)
        p.add_argument("--serving-image", required=True)
        if name == "install":
            p.add_argument("--operator-image", required=True)
            p.add_argument("--data-path", required=True, help="node directory behind the PV")
            p.add_argument("--timeout", type=int, default=300)
    args = ap.parse_args(argv)

    if args.command == "tools":
        print(os.environ.get("KIND") or tool_path("kind"))
        print(kubectl_binary())
        return 0
    if args.command == "images":
        print(SERVING.name(), OPERATOR.name())
        print(" ".join(PORTABLE_BUILD_ARGS))
        return 0
    if args.command == "dataset":
        args.out.parent.mkdir(parents=True, exist_ok=True)
        np.save(args.out, sample_dataset())
        return 0
    kubectl = Kubectl(args.kubeconfig, binary=args.kubectl)
    if args.command == "install":
        kubectl.apply_manifest(data_pv_manifest(args.data_path))
        install_operator(kubectl, args.operator_image, args.serving_image, timeout=args.timeout)
        return 0
    return run_scenarios(kubectl, args.serving_image)


def kubectl_binary() -> str:
    """$KUBECTL; else the pinned build if cached (no build for a cached one); else a
    kubectl on PATH (kind's API server accepts one minor either side); else the
    pinned build, built now (minutes: it is the Kubernetes build)."""
    explicit = os.environ.get("KUBECTL")
    if explicit:
        return explicit
    pinned = bin_dir() / f"kubectl-v{pinned_version('kubectl')}"
    if os.access(pinned, os.X_OK):
        return str(pinned)
    return shutil.which("kubectl") or str(tool_path("kubectl"))


def sample_dataset() -> np.ndarray[Any, np.dtype[np.float32]]:
    return clustered(VECTORS, DIMENSION, seed=SEED).astype(np.float32)


# -- the scenarios ----------------------------------------------------------------------


class ScenarioError(AssertionError):
    pass


def wait_for(what: str, probe: Callable[[], T | None], *, timeout: float = 120.0) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.5)
    raise ScenarioError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


def check(condition: bool, message: str) -> None:
    if not condition:
        raise ScenarioError(message)


class Story:
    """The index of examples/local-cluster/products.yaml, seen through kubectl."""

    def __init__(self, kubectl: Kubectl, serving_image: str) -> None:
        self.kubectl = kubectl
        self.serving_image = serving_image
        self.data = sample_dataset()

    def status(self) -> dict[str, Any]:
        obj = self.kubectl.json("-n", NAMESPACE, "get", "knn", INDEX)
        status: dict[str, Any] = obj.get("status") or {}
        return status

    @staticmethod
    def conditions(status: dict[str, Any]) -> dict[str, str]:
        return {c["type"]: c["status"] for c in status.get("conditions", [])}

    def wait_status(
        self, what: str, done: Callable[[dict[str, Any]], bool], timeout: float = 300
    ) -> tuple[dict[str, Any], list[str]]:
        """Waits until ``done(status)``; returns the status and the phases seen on the way."""
        phases: list[str] = []

        def probe() -> dict[str, Any] | None:
            status = self.status()
            phase = status.get("phase", "")
            if phase and (not phases or phases[-1] != phase):
                phases.append(phase)
            return status if done(status) else None

        try:
            return wait_for(what, probe, timeout=timeout), phases
        except ScenarioError as err:
            raise ScenarioError(f"{err}\nphases {phases}") from None

    def patch(self, spec: dict[str, Any]) -> None:
        self.kubectl.run(
            "-n", NAMESPACE, "patch", "knn", INDEX, "--type=merge", "-p", json.dumps({"spec": spec})
        )

    def client_pod(self) -> None:
        """A pod to query from, in the index's namespace (restricted profile)."""
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": CLIENT_POD, "namespace": NAMESPACE},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "securityContext": restricted_pod_security(),
                "containers": [
                    {
                        "name": "client",
                        "image": self.serving_image,
                        "imagePullPolicy": "Never",
                        "command": ["sleep", "infinity"],
                        "securityContext": restricted_container_security(),
                    }
                ],
            },
        }
        self.kubectl.apply_manifest(yaml.safe_dump(pod))
        self.kubectl.run(
            "-n", NAMESPACE, "wait", "--for=condition=Ready", f"pod/{CLIENT_POD}", "--timeout=120s"
        )

    def query(self, row: int) -> dict[str, Any] | None:
        """POST /v1/query from the client pod; None while the Service has no endpoint."""
        body = json.dumps({"vector": self.data[row].tolist(), "k": 5})
        try:
            out = self.kubectl.run(
                "-n", NAMESPACE, "exec", CLIENT_POD, "--", "python", "-c", _QUERY, body
            ).stdout
        except KubectlError:
            return None
        answer: dict[str, Any] = json.loads(out)
        return answer

    def diagnostics(self) -> str:
        k = self.kubectl
        diag = k.run("-n", NAMESPACE, "get", "knn,all,events", check=False).stdout
        ops = k.run(
            "-n", "knn-system", "logs", "deployment/knn-operator", "--tail=60", check=False
        ).stdout
        return f"{diag}\n--- operator ---\n{ops}"

    # Each scenario as in tests/e2e/test_operator.py, in the same order (each starts
    # from where the previous one left the index).

    def build_serve_query(self) -> None:
        self.kubectl.run("apply", "-f", str(EXAMPLE))
        self.client_pod()
        status, phases = self.wait_status(
            "KnnIndex Ready", lambda s: self.conditions(s).get("Ready") == "True"
        )
        check("Building" in phases and phases[-1] == "Serving", f"phases {phases}")
        build = status["builds"][-1]
        check(build["outcome"] == "Succeeded", f"build {build}")
        check(build["vectors"] == VECTORS, f"build {build}")
        check(build["recall"] >= 0.9, f"build {build}")
        answer = wait_for("the Service to answer", lambda: self.query(123))
        check(len(answer["ids"]) == 5, f"answer {answer}")
        check(answer["distances"] == sorted(answer["distances"]), f"answer {answer}")
        check(answer["version"] == status["stableVersion"], f"answer {answer}")

    def bad_source_fails_and_stable_keeps_serving(self) -> None:
        stable = self.status()["stableVersion"]
        self.patch(
            {
                "source": {"uri": "pvc://knn-data/datasets/missing.npy"},
                "build": {"backoffLimit": 0},
            }
        )
        status, _ = self.wait_status("phase Failed", lambda s: s.get("phase") == "Failed", 180)
        failed = status["builds"][-1]
        check(failed["outcome"] == "Failed", f"build {failed}")
        # The builder's own words (knn-build's summary), not a generic Job failure.
        check("missing.npy" in failed["message"], f"build {failed}")
        check(status["stableVersion"] == stable, f"stable {status['stableVersion']} != {stable}")
        answer = wait_for("the Service to answer", lambda: self.query(7))
        check(answer["version"] == stable, f"answer {answer}")
        self.patch({"source": {"uri": "pvc://knn-data/datasets/products.npy"}})
        self.wait_status("Serving again", lambda s: s.get("phase") == "Serving", 120)
        check(self.status()["stableVersion"] == stable, "the good source is a new version")

    def killed_serving_pod_is_replaced(self) -> None:
        version = self.status()["stableVersion"]
        prefix = f"{INDEX}-{version}-"
        pods = [
            p["metadata"]["name"]
            for p in self.kubectl.json("-n", NAMESPACE, "get", "pods")["items"]
            if p["metadata"]["name"].startswith(prefix)
        ]
        check(len(pods) == 1, f"serving pods {pods}")
        old = pods[0]
        self.kubectl.run(
            "-n", NAMESPACE, "delete", "pod", old, "--grace-period=0", "--force", "--wait=false"
        )

        def replaced() -> str | None:
            for p in self.kubectl.json("-n", NAMESPACE, "get", "pods")["items"]:
                name = str(p["metadata"]["name"])
                ready = {c["type"]: c["status"] for c in p["status"].get("conditions", [])}
                if name != old and name.startswith(prefix) and ready.get("Ready") == "True":
                    return name
            return None

        wait_for("a new serving pod, Ready", replaced, timeout=120)
        status = self.status()
        check(
            status["phase"] == "Serving" and self.conditions(status).get("Ready") == "True",
            f"status {status}",
        )
        answer = wait_for("the Service to answer again", lambda: self.query(9))
        check(answer["version"] == version, f"answer {answer}")

    def operator_killed_mid_build_resumes(self) -> None:
        before = self.status()["stableVersion"]
        self.patch({"hnsw": {"efConstruction": 120}})

        def new_job() -> str | None:
            jobs = self.kubectl.run("-n", NAMESPACE, "get", "jobs", "-o", "name").stdout.split()
            prefix = f"job.batch/{INDEX}-build-"
            fresh = [j for j in jobs if j.startswith(prefix) and before not in j]
            return fresh[0] if fresh else None

        job = wait_for("the new version's builder Job", new_job, timeout=60)
        self.kubectl.run(
            "-n",
            "knn-system",
            "delete",
            "pod",
            "-l",
            "app.kubernetes.io/name=knn-operator",
            "--grace-period=0",
            "--force",
        )
        status, _ = self.wait_status(
            "a new stable version after the operator's restart",
            lambda s: s.get("phase") == "Serving" and s.get("stableVersion") not in (None, before),
        )
        check(job.endswith(status["stableVersion"]), f"job {job}, status {status}")
        check(status["builds"][-1]["outcome"] == "Succeeded", f"status {status}")
        answer = wait_for("the Service to answer", lambda: self.query(11))
        check(answer["version"] == status["stableVersion"], f"answer {answer}")

    def deleting_the_index_collects_what_it_owned(self) -> None:
        self.kubectl.run(
            "-n", NAMESPACE, "delete", "knn", INDEX, "--wait=true", "--timeout=120s", timeout=130
        )

        def owned_gone() -> bool:
            left = self.kubectl.run(
                "-n", NAMESPACE, "get", "jobs,deployments,services,replicasets", "-o", "name"
            ).stdout.split()
            return not [n for n in left if INDEX in n]

        wait_for("the garbage collector to remove the index's objects", owned_gone, timeout=120)


def run_scenarios(kubectl: Kubectl, serving_image: str) -> int:
    story = Story(kubectl, serving_image)
    # A cluster kept from an earlier run (KIND_KEEP=1) may still hold these.
    kubectl.run("-n", NAMESPACE, "delete", "knn", INDEX, "--ignore-not-found", timeout=180)
    kubectl.run("-n", NAMESPACE, "delete", "pod", CLIENT_POD, "--ignore-not-found", timeout=60)
    scenarios = [
        story.build_serve_query,
        story.bad_source_fails_and_stable_keeps_serving,
        story.killed_serving_pod_is_replaced,
        story.operator_killed_mid_build_resumes,
        story.deleting_the_index_collects_what_it_owned,
    ]
    for scenario in scenarios:
        began = time.monotonic()
        try:
            scenario()
        except (ScenarioError, KubectlError) as err:
            print(f"FAIL {scenario.__name__}: {err}\n{story.diagnostics()}", flush=True)
            return 1
        print(f"PASS {scenario.__name__} ({time.monotonic() - began:.1f}s)", flush=True)
    kubectl.run("-n", NAMESPACE, "delete", "pod", CLIENT_POD, "--wait=false", check=False)
    print(f"all {len(scenarios)} scenarios passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
