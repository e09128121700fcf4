"""`make demo`: the whole product on a local Kubernetes cluster, as a user sees it.

Brings the local cluster up (``make up``: control plane, a real node, DNS, the product's
images built from its Dockerfiles, the operator as a Deployment), writes a seeded
sample of 20,000 embeddings into the cluster's PersistentVolume, applies the
KnnIndex of examples/local-cluster/products.yaml, follows it from Building to
Serving, queries it through its Service, changes the index (a new HNSW parameter)
and follows the new version replacing the old one; then rolls out a new efSearch in
canary steps judged by the cluster's Prometheus (promoted), and a canary whose
efSearch passes the build gate but misses the analysis threshold (rolled back by the
operator on its own). It prints a timeline and leaves the cluster up with the
commands to explore it (``make down`` stops it).

``--local`` runs the data plane alone instead (``knn-build`` + ``knn-serve`` on
loopback, no cluster, no root).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from .cluster_cli import KUBECONFIG_FILE, config_for, running_supervisor
from .cluster_cli import up as cluster_up
from .incluster import IMAGE_UID, PROMETHEUS_IN_CLUSTER
from .knnserve import KNN_BUILD, serve
from .kubectl import Kubectl
from .procs import ProcessError
from .synthetic import clustered, sample
from .tools import REPO_ROOT

_READY_TIMEOUT = 120.0
_EXAMPLE = REPO_ROOT / "examples" / "local-cluster" / "products.yaml"
_VECTORS, _DIMENSION = 20_000, 64


def _say(text: str) -> None:
    print(f"==> {text}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m knn_devtools.demo", description=__doc__)
    ap.add_argument("--dir", type=Path, default=Path(".local"), help="state directory")
    ap.add_argument("--local", action="store_true", help="data plane only, on loopback")
    ap.add_argument("--vectors", type=int, default=_VECTORS)
    ap.add_argument("--dimension", type=int, default=_DIMENSION)
    ap.add_argument("--serve", action="store_true", help="--local: keep serving until Ctrl-C")
    args = ap.parse_args(argv)
    if args.local:
        return _local(args.dir / "demo", args.vectors, args.dimension, keep_serving=args.serve)
    return _cluster(args.dir.resolve())


# -- the cluster story -------------------------------------------------------------------


@dataclass
class _Seen:
    """What the timeline has printed already."""

    phase: str = ""
    rollout: tuple[Any, ...] = ()
    runs: set[tuple[Any, Any]] = field(default_factory=set)
    builds: set[tuple[Any, Any]] = field(default_factory=set)
    events: set[tuple[Any, Any]] = field(default_factory=set)


class _Timeline:
    def __init__(self) -> None:
        self.began = time.monotonic()

    def say(self, text: str) -> None:
        print(f"    [{time.monotonic() - self.began:6.1f}s] {text}", flush=True)


def _cluster(directory: Path) -> int:
    began = time.monotonic()
    if os.geteuid() != 0:
        raise SystemExit(
            "demo: the local cluster needs root (network interfaces, iptables, mounts, "
            "cgroups); run as root, or `make demo DEMO_ARGS=--local` for the data plane alone"
        )
    if running_supervisor(directory) is None:
        _say("starting the local cluster (make up): control plane, node, DNS, images, operator")
        cluster_up(directory, timeout=1800.0)
    else:
        _say(f"the local cluster is already running ({directory / KUBECONFIG_FILE})")
    kubectl = Kubectl(directory / KUBECONFIG_FILE)
    timeline = _Timeline()

    data = config_for(directory).run_dir / "data" / "datasets"
    data.mkdir(parents=True, exist_ok=True)
    os.chown(data, IMAGE_UID, IMAGE_UID)
    vectors = clustered(_VECTORS, _DIMENSION, seed=11).astype(np.float32)
    np.save(data / "products.npy", vectors)
    _say(f"wrote a seeded sample: {_VECTORS} x {_DIMENSION} embeddings into the PersistentVolume")

    if kubectl.run("-n", "demo", "get", "knn", "products", check=False).returncode == 0:
        _say("removing the previous demo's KnnIndex")
        kubectl.run("-n", "demo", "delete", "knn", "products", "--wait=true", timeout=180)
    _say(f"kubectl apply -f {_EXAMPLE.relative_to(REPO_ROOT)}")
    timeline = _Timeline()
    kubectl.run("apply", "-f", str(_EXAMPLE))
    seen = _Seen()
    first = _follow(kubectl, timeline, lambda s: s.get("phase") == "Serving", seen)
    _query(kubectl, vectors[42].tolist(), first["stableVersion"])

    _say("a change: hnsw.m 16 -> 24 (a new version is built, validated, then replaces the old)")
    timeline = _Timeline()
    kubectl.run(
        "-n",
        "demo",
        "patch",
        "knn",
        "products",
        "--type=merge",
        "-p",
        json.dumps({"spec": {"hnsw": {"m": 24}}}),
    )
    old = first["stableVersion"]
    second = _follow(
        kubectl,
        timeline,
        lambda s: s.get("phase") == "Serving" and s.get("stableVersion") not in (None, old),
        seen,
    )
    _query(kubectl, vectors[42].tolist(), second["stableVersion"])
    _rollouts(kubectl, seen, second)
    print(kubectl.run("-n", "demo", "get", "knn,deployments,jobs").stdout, flush=True)
    _say(f"done in {time.monotonic() - began:.0f}s; the cluster stays up. Explore it:")
    print(f"    export KUBECONFIG={directory / KUBECONFIG_FILE}")
    print(f"    export PATH={kubectl.binary.parent}:{REPO_ROOT / '.venv' / 'bin'}:$PATH")
    print("    kubectl -n demo get knn; kubectl -n demo describe knn products")
    print("    kubectl knn -n demo status products; kubectl knn -n demo history products")
    print("    make down   # stops the cluster and removes what it made on this machine")
    return 0


def _recorded(status: dict[str, Any], ef: int) -> float:
    """The stable version's recorded recall at `ef` (the highest measured rung below it)."""
    rec = next(b for b in status["builds"] if b["version"] == status["stableVersion"])
    return float(max(p["recall"] for p in rec["recallCurve"] if p["efSearch"] <= ef))


def _bad_ef(status: dict[str, Any], gate: float, good: float) -> int | None:
    """An efSearch that passes the build gate but is clearly worse than `good`."""
    rec = next(b for b in status["builds"] if b["version"] == status["stableVersion"])
    rungs = [p for p in rec["recallCurve"] if gate <= p["recall"] < good - 0.01]
    return int(rungs[0]["efSearch"]) if rungs else None


def _rollout_patch(ef: int, min_recall: float) -> str:
    analysis = {
        "prometheus": {"address": PROMETHEUS_IN_CLUSTER, "timeout": "2s"},
        "interval": "4s",
        "scrapeInterval": "2s",
        "failureLimit": 0,
        "inconclusiveLimit": 30,
        "thresholds": {"minRecall": min_recall},
    }
    steps = [{"setWeight": 50}, {"pause": {"duration": "10s"}}]
    spec = {"hnsw": {"efSearch": ef}, "rollout": {"steps": steps, "analysis": analysis}}
    return json.dumps({"spec": spec})


def _rollouts(kubectl: Kubectl, seen: _Seen, serving: dict[str, Any]) -> None:
    """A canary that earns its traffic, then one that the analysis rolls back."""
    ef = int(serving.get("servingEfSearch") or 64)
    good_ef = ef * 2
    good = _recorded(serving, good_ef)
    threshold = round(_recorded(serving, ef) - 0.02, 3)
    _say(
        f"a canary: efSearch {ef} -> {good_ef} in steps (50% of pods, pause 10s), judged "
        f"every 4s in Prometheus: recall >= {threshold}"
    )
    timeline = _Timeline()
    kubectl.run("-n", "demo", "patch", "knn", "products", "--type=merge", "-p",
                _rollout_patch(good_ef, threshold))  # fmt: skip
    stable = serving["stableRevision"]
    promoted = _follow(
        kubectl,
        timeline,
        lambda s: s.get("stableRevision") not in (None, stable) and not s.get("canaryRevision"),
        seen,
    )
    bad = _bad_ef(promoted, 0.9, good)
    if bad is None:
        _say("no recorded efSearch passes the build gate but misses the analysis: skipping")
        return
    threshold = round((_recorded(promoted, bad) + good) / 2, 3)
    _say(
        f"a bad canary: efSearch {bad} (recorded recall {_recorded(promoted, bad):.3f}: above "
        f"the build gate 0.9, below the analysis threshold {threshold})"
    )
    timeline = _Timeline()
    kubectl.run("-n", "demo", "patch", "knn", "products", "--type=merge", "-p",
                _rollout_patch(bad, threshold))  # fmt: skip
    _follow(
        kubectl,
        timeline,
        lambda s: bool((s.get("rolledBack") or {}).get("trafficRestoredAt")),
        seen,
    )


def _follow(
    kubectl: Kubectl,
    timeline: _Timeline,
    done: Callable[[dict[str, Any]], bool],
    seen: _Seen,
    timeout: float = 900.0,
) -> dict[str, Any]:
    """Prints each new phase, build and Event of demo/products until ``done(status)``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        obj = kubectl.json("-n", "demo", "get", "knn", "products")
        status = obj.get("status") or {}
        phase = status.get("phase", "")
        if phase and phase != seen.phase:
            timeline.say(f"phase {phase}")
            seen.phase = phase
        _say_rollout(status, timeline, seen)
        for b in status.get("builds", []):
            key = (b.get("version"), b.get("outcome"))
            if not b.get("outcome") or key in seen.builds:
                continue
            seen.builds.add(key)
            if b["outcome"] == "Building":
                timeline.say(f"build {b['version']}: started")
            else:
                timeline.say(
                    f"build {b['version']}: {b['outcome']}, {b.get('vectors')} vectors, "
                    f"recall {b.get('recall')} at efSearch {b.get('efSearch')} (the smallest "
                    f"that reaches minRecall), {b.get('buildSeconds')} s "
                    f"{b.get('message') or ''}".rstrip()
                )
        events = kubectl.json(
            "-n", "demo", "get", "events", "--field-selector", "involvedObject.kind=KnnIndex"
        )["items"]
        for e in sorted(events, key=lambda e: e.get("lastTimestamp") or ""):
            uid = (e["metadata"]["uid"], e.get("count"))
            if uid not in seen.events:
                seen.events.add(uid)
                timeline.say(f"event {e['type']} {e['reason']}: {e['message']}")
        if done(status):
            return status
        time.sleep(0.5)
    raise SystemExit(f"demo: demo/products did not get there in {timeout:.0f}s")


def _say_rollout(status: dict[str, Any], timeline: _Timeline, seen: _Seen) -> None:
    """Steps and weights of a canary, and each analysis run, as they change."""
    state = status.get("rollout") or {}
    now = (status.get("canaryRevision"), state.get("step"), status.get("canaryWeight"))
    if status.get("canaryRevision") and now != seen.rollout:
        seen.rollout = now
        timeline.say(
            f"canary {now[0]}: step {(now[1] or 0) + 1}, {now[2] or 0}% of traffic "
            f"(stable {status.get('stableRevision')})"
        )
    analysis = status.get("analysis") or {}
    run = (analysis.get("revision"), analysis.get("runs"))
    if analysis.get("runs") and run not in seen.runs:
        seen.runs.add(run)
        for m in (analysis.get("lastMeasurements") or [])[-3:]:
            if m.get("at") == analysis.get("lastRun"):
                timeline.say(f"analysis run {run[1]}: {m['message']} ({m['result']})")


def _query(kubectl: Kubectl, vector: list[float], version: str) -> None:
    vip = kubectl.json("-n", "demo", "get", "service", "products")["spec"]["clusterIP"]
    body = json.dumps({"vector": vector, "k": 5}).encode()
    _say(f"POST http://{vip}/v1/query (Service products, ClusterIP through kube-proxy), k=5")
    answer: dict[str, Any] = {}
    for _ in range(60):  # kube-proxy programs a new endpoint within a sync period
        with contextlib.suppress(OSError):
            request = urllib.request.Request(
                f"http://{vip}/v1/query", data=body, headers={"content-type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                answer = json.load(response)
            if answer.get("version") == version:
                break
        time.sleep(0.5)
    for i, (doc, dist) in enumerate(zip(answer["ids"], answer["distances"], strict=True)):
        print(f"    {i + 1}. id {doc}  cosine distance {max(dist, 0.0):.4f}")
    print(f"    served by version {answer.get('version')}", flush=True)


# -- the data plane alone (--local) ------------------------------------------------------


def _local(work: Path, vectors: int, dimension: int, *, keep_serving: bool) -> int:
    work.mkdir(parents=True, exist_ok=True)
    source, ids = work / "products.npy", work / "products-ids.json"
    _say(f"writing a seeded sample: {vectors} x {dimension} embeddings to {source}")
    np.save(source, clustered(vectors, dimension, seed=11))
    ids.write_text("[" + ",".join(f'"sku-{i:06d}"' for i in range(vectors)) + "]\n")

    _say("knn-build: load, build HNSW, validate recall on held-out probes, write the artifact")
    build = subprocess.run(
        [
            str(KNN_BUILD),
            "--source",
            str(source),
            "--ids",
            str(ids),
            "--metric",
            "cosine",
            "--m",
            "16",
            "--ef-construction",
            "200",
            "--ef-search",
            "64",
            "--probe-queries",
            "500",
            "--k",
            "10",
            "--min-recall",
            "0.9",
            "--out",
            str(work / "artifacts"),
            "--summary-file",
            str(work / "summary.json"),
        ],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if build.returncode != 0:
        return build.returncode
    summary = build.stdout.strip().splitlines()[-1]
    print(f"    summary: {summary}")
    version = json.loads(summary)["version"]
    artifact = work / "artifacts" / version
    try:
        _serve_and_query(artifact, version, work / "logs", dimension, keep_serving=keep_serving)
    except ProcessError as err:
        raise SystemExit(f"demo: {err}") from None
    _say("done")
    return 0


def _serve_and_query(
    artifact: Path, version: str, log_dir: Path, dimension: int, *, keep_serving: bool
) -> None:
    with serve(
        artifact,
        log_dir,
        ready=False,
        index_name="products",
        namespace="demo",
        args=["--probe-interval", "10", "--log-level", "warning"],
        timeout=_READY_TIMEOUT,
    ) as server:
        url = server.url
        _say(f"knn-serve: serving version {version} on {url}")
        server.wait_ready(_READY_TIMEOUT)
        query = sample(1, dimension, seed=11, sample_seed=2024)[0]
        _say("POST /v1/query {vector, k: 5}")
        r = httpx.post(url + "/v1/query", json={"vector": query.tolist(), "k": 5}, timeout=10)
        r.raise_for_status()
        for i, (doc, dist) in enumerate(zip(r.json()["ids"], r.json()["distances"], strict=True)):
            print(f"    {i + 1}. {doc}  cosine distance {dist:.4f}")
        bad = httpx.post(url + "/v1/query", json={"vector": [1.0, 2.0], "k": 5}, timeout=10)
        _say(f"bad input is refused: HTTP {bad.status_code} {bad.json()['detail']}")
        _say("GET /metrics (recall from the continuous probe replay, identity labels):")
        for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
            if line.startswith(("knn_recall_ratio", "knn_index_vectors", "knn_requests_total")):
                print(f"    {line}")
        if keep_serving:
            _say(f"serving on {url} until Ctrl-C (try: curl {url}/v1/info)")
            with contextlib.suppress(KeyboardInterrupt):
                server.child.wait()


if __name__ == "__main__":
    sys.exit(main())
