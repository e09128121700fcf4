"""What the kubelet and the Job and Deployment controllers would do, for a control plane
without a node (tier 3): the operator's builder Jobs run as the real `knn-build` and
its serving Deployments as real `knn-serve`s on loopback, each from the command the
operator wrote, and their status reported to the API server as those controllers
report it. A serving Deployment scaled to zero has its server stopped.

    pods = StandIn(kubectl, namespace, workdir, on_servers=prom_targets)
    pods.sync()            # once per poll: run new Jobs, start/stop servers

The same stand-in as tests/controlplane (operator_support, test_operator_rollout), for
devtools, which cannot import tests.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from knn_contracts import api

from knn_devtools.knnserve import BIN, KnnServe
from knn_devtools.kubectl import Kubectl

Obj = dict[str, Any]


def _now(offset: float = 0.0) -> str:
    t = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset)
    return t.isoformat(timespec="seconds").replace("+00:00", "Z")


def _condition(type_: str, reason: str, message: str = "") -> Obj:
    at = _now()
    return {"type": type_, "status": "True", "reason": reason, "message": message,
            "lastProbeTime": at, "lastTransitionTime": at}  # fmt: skip


class StandIn:
    def __init__(
        self,
        kubectl: Kubectl,
        namespace: str,
        workdir: Path,
        on_servers: Callable[[Sequence[str]], None],
    ) -> None:
        self.kubectl, self.ns, self.workdir = kubectl, namespace, workdir
        self.on_servers = on_servers
        self.servers: dict[str, KnnServe] = {}
        self._jobs_done: set[str] = set()
        workdir.mkdir(parents=True, exist_ok=True)

    def _items(self, kind: str, component: str) -> list[Obj]:
        selector = f"{api.LABEL_COMPONENT}={component}"
        out = self.kubectl.run("get", kind, "-n", self.ns, "-l", selector, "-o", "json")
        items: list[Obj] = json.loads(out.stdout)["items"]
        return items

    def _patch_status(self, kind: str, name: str, status: Obj) -> None:
        self.kubectl.run(
            "patch", kind, name, "-n", self.ns, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": status}),
        )  # fmt: skip

    def sync(self) -> None:
        for job in self._items("jobs", "builder"):
            if job["metadata"]["name"] not in self._jobs_done and not job.get("status", {}).get(
                "conditions"
            ):
                self._run_job(job)
        running_before = set(self.servers)
        for dep in self._items("deployments", "serving"):
            name, replicas = dep["metadata"]["name"], int(dep["spec"].get("replicas", 1))
            if replicas > 0 and name not in self.servers:
                self._start_server(dep)
            elif replicas == 0 and name in self.servers:
                self.servers.pop(name).stop()
                self._patch_status(
                    "deployment",
                    name,
                    {"observedGeneration": dep["metadata"]["generation"], "replicas": 0,
                     "updatedReplicas": 0, "readyReplicas": 0, "availableReplicas": 0},
                )  # fmt: skip
        if set(self.servers) != running_before:
            self.on_servers([s.address for s in self.servers.values()])

    # --- builder Jobs ---

    def _run_job(self, job: Obj) -> None:
        """The Job's own command, its summary line as the Pod's termination message."""
        name = job["metadata"]["name"]
        template = job["spec"]["template"]
        container = template["spec"]["containers"][0]
        command = list(container["command"])
        summary = self.workdir / f"{name}.summary.json"
        command[command.index("--summary-file") + 1] = str(summary)
        command[0] = str(BIN / command[0])
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        message = summary.read_text().strip() if summary.exists() else done.stderr[-1000:]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{name}-{secrets.token_hex(3)}",
                "namespace": self.ns,
                "labels": dict(template["metadata"]["labels"]),
                "ownerReferences": [
                    {"apiVersion": "batch/v1", "kind": "Job", "name": name,
                     "uid": job["metadata"]["uid"], "controller": True,
                     "blockOwnerDeletion": True}
                ],
            },
            "spec": template["spec"],
        }  # fmt: skip
        self.kubectl.run("create", "-f", "-", stdin=json.dumps(pod))
        ok = done.returncode == 0
        self._patch_status(
            "pod",
            pod["metadata"]["name"],
            {
                "phase": "Succeeded" if ok else "Failed",
                "startTime": _now(-5),
                "containerStatuses": [
                    {"name": container["name"], "image": container["image"], "imageID": "",
                     "ready": False, "started": False, "restartCount": 0,
                     "state": {"terminated": {
                         "exitCode": done.returncode, "reason": "Completed" if ok else "Error",
                         "message": message, "startedAt": _now(-5), "finishedAt": _now()}}}
                ],
            },
        )  # fmt: skip
        counts = {"succeeded": 1} if ok else {"failed": 1}
        conditions = (
            [_condition("SuccessCriteriaMet", "CompletionsReached"),
             _condition("Complete", "CompletionsReached")]
            if ok
            else [_condition("FailureTarget", "BackoffLimitExceeded"),
                  _condition("Failed", "BackoffLimitExceeded")]
        )  # fmt: skip
        self._patch_status(
            "job",
            name,
            {"startTime": _now(-6), **({"completionTime": _now()} if ok else {}), "active": 0,
             **counts, "ready": 0, "terminating": 0, "uncountedTerminatedPods": {},
             "conditions": conditions},
        )  # fmt: skip
        self._jobs_done.add(name)

    # --- serving Deployments ---

    def _start_server(self, dep: Obj) -> None:
        name = dep["metadata"]["name"]
        command: list[str] = dep["spec"]["template"]["spec"]["containers"][0]["command"]
        flags = dict(zip(command[1::2], command[2::2], strict=False))
        keep = ("--ef-search", "--revision", "--probe-interval", "--live-recall-rate")
        args = [x for flag in keep if flag in flags for x in (flag, flags[flag])]
        labels = dep["metadata"]["labels"]
        server = KnnServe(
            flags["--artifact"],
            self.workdir / name,
            index_name=labels[api.LABEL_INDEX],
            namespace=self.ns,
            args=args,
        )
        server.start()
        self.servers[name] = server
        replicas = int(dep["spec"].get("replicas", 1))
        at = _now()
        self._patch_status(
            "deployment",
            name,
            {"observedGeneration": dep["metadata"]["generation"], "replicas": replicas,
             "updatedReplicas": replicas, "readyReplicas": replicas,
             "availableReplicas": replicas,
             "conditions": [
                 {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                  "message": "Deployment has minimum availability.", "lastUpdateTime": at,
                  "lastTransitionTime": at},
                 {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                  "message": f'ReplicaSet "{name}" has successfully progressed.',
                  "lastUpdateTime": at, "lastTransitionTime": at}]},
        )  # fmt: skip

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.servers.clear()
