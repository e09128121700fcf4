"""A rollout through the Gateway API router, with real requests through Traefik on the
real node: at every step the requests split by the route's weights, a rollback sends
everything back to the stable revision with no request failing, and the route a
GitOps tool would apply differs from the live one only in its weights.

Each new revision here is a new version (a `knn.dev/rebuild`), so every answer says
which revision served it (`version` in the response). Printed: the route as it looks
mid-canary and the measured splits and switch times (docs/benchmarks.md, README)."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import yaml
from knn_devtools.cluster import Cluster
from knn_devtools.kubectl import Kubectl
from knn_devtools.tools import REPO_ROOT

if TYPE_CHECKING:
    from tests.e2e.e2e_support import index_status, wait_for, wait_index, write_products_dataset
else:
    from e2e_support import index_status, wait_for, wait_index, write_products_dataset

NAME, NS, HOST = "gallery", "demo", "gallery.knn.test"
EXAMPLES = REPO_ROOT / "examples" / "local-cluster"
COUNT = 1000  # requests per measured step: Traefik's WRR is exact to about ±1 in these


def _status(kubectl: Kubectl) -> dict[str, Any]:
    return index_status(kubectl, NS, NAME)


def _wait(kubectl: Kubectl, what: str, check: Any, timeout: float = 300) -> dict[str, Any]:
    return wait_index(kubectl, NS, NAME, what, check, timeout)


class Client:
    """Requests to the index through the Gateway (Traefik), one at a time, keep-alive off."""

    def __init__(self, gateway: str, data: np.ndarray[Any, np.dtype[np.float32]]) -> None:
        self.url, self.data, self.i = f"{gateway}/v1/query", data, 0

    def one(self) -> str | None:
        """The version that answered, or None for a failed request."""
        self.i += 1
        body = json.dumps({"vector": self.data[self.i % len(self.data)].tolist(), "k": 5})
        req = urllib.request.Request(
            self.url, data=body.encode(), headers={"content-type": "application/json", "host": HOST}
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return str(json.loads(r.read())["version"]) if r.status == 200 else None
        except OSError:
            return None

    def count(self, n: int) -> Counter[str | None]:
        return Counter(self.one() for _ in range(n))


class Flow:
    """Requests on a thread, each answer recorded with its time, until stopped."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.log: list[tuple[float, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for _ in range(100_000):  # bounded; stopped long before
            if self._stop.is_set():
                return
            self.log.append((time.monotonic(), self.client.one()))

    def __enter__(self) -> Flow:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _route(kubectl: Kubectl) -> dict[str, Any]:
    route: dict[str, Any] = kubectl.json("-n", NS, "get", "httproute", NAME)
    return route


def _weights(route: dict[str, Any]) -> dict[str, int]:
    return {r["name"]: r.get("weight", 1) for r in route["spec"]["rules"][0]["backendRefs"]}


def _annotate(kubectl: Kubectl, key: str) -> None:
    kubectl.run("-n", NS, "annotate", "--overwrite", "knn", NAME, f"knn.dev/{key}={time.time()}")


def _paused_at(step: int) -> Any:
    return lambda s: (
        (s.get("rollout") or {}).get("step") == step and s["rollout"].get("pausedReason")
    )


@pytest.fixture(scope="module")
def gallery(cluster: Cluster, kubectl: Kubectl) -> Any:
    data = write_products_dataset(cluster)
    storage = [
        d for d in yaml.safe_load_all((EXAMPLES / "products.yaml").read_text())
        if d and d["kind"] != "KnnIndex"
    ]  # fmt: skip
    kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump_all(storage))
    kubectl.run("apply", "-f", str(EXAMPLES / "gateway-rollout.yaml"))
    _wait(kubectl, "gallery Serving", lambda s: s.get("phase") == "Serving", timeout=420)
    client = Client(cluster.endpoints["gateway"], data)
    wait_for("an answer through the gateway", client.one, timeout=60)
    yield client
    kubectl.run("-n", NS, "delete", "knn", NAME, "--wait=true", "--timeout=120s")
    kubectl.run("-n", NS, "delete", "httproute", NAME)


def _diff(kubectl: Kubectl) -> list[str]:
    """What `kubectl diff` (the route in git against the live one) would change."""
    out = kubectl.run("diff", "-f", str(EXAMPLES / "gateway-rollout.yaml"), check=False)
    assert out.returncode in (0, 1), out.stderr
    changed = [
        line[1:].strip()
        for line in out.stdout.splitlines()
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    # The live object carries a higher generation: not something git wrote.
    return [c for c in changed if not c.startswith("generation:")]


class RouteWatch:
    """The canary's weight in the route, polled on a thread: when each weight first
    appeared (to time how long the traffic takes to follow a write)."""

    def __init__(self, kubectl: Kubectl) -> None:
        self.kubectl = kubectl
        self.seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        path = "jsonpath={.spec.rules[0].backendRefs[1].weight}"
        for _ in range(20_000):  # bounded; stopped long before
            if self._stop.wait(0.02):
                return
            got = self.kubectl.run("-n", NS, "get", "httproute", NAME, "-o", path, check=False)
            if got.returncode == 0 and got.stdout.strip().isdigit():
                self.seen.setdefault(int(got.stdout), time.monotonic())

    def __enter__(self) -> RouteWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _split_after(
    flow: Flow, canary: str, written: float, count: int
) -> tuple[float, Counter[str | None]]:
    """Seconds from the weight's write to the first canary answer, and the next
    `count` answers from half a second after that."""
    first = wait_for(
        "a canary answer after the weight's write",
        lambda: next((t for t, v in list(flow.log) if t > written and v == canary), None),
        timeout=30,
    )
    wait_for(
        f"{count} answers after the switch",
        lambda: sum(t > first + 0.5 for t, _ in list(flow.log)) >= count,
        timeout=120,
    )
    after = [v for t, v in list(flow.log) if t > first + 0.5][:count]
    return first - written, Counter(after)


def test_a_gateway_rollout_splits_real_requests_by_the_route_weights(
    kubectl: Kubectl, gallery: Client
) -> None:
    before = _status(kubectl)
    stable = before["stableVersion"]
    assert _diff(kubectl) == []  # the operator's 100/0 is what git says
    assert gallery.count(50) == Counter({stable: 50})
    with Flow(gallery) as flow, RouteWatch(kubectl) as watch:
        _annotate(kubectl, "rebuild")
        for step, weight in ((1, 20), (3, 60)):
            mid = _wait(kubectl, f"the canary paused at {weight}%", _paused_at(step), timeout=420)
            canary = mid["canaryVersion"]
            route = _route(kubectl)
            assert _weights(route) == {f"{NAME}-stable": 100 - weight, f"{NAME}-canary": weight}
            assert mid["canaryWeight"] == weight
            [cond] = [c for c in mid["conditions"] if c["type"] == "TrafficRouted"]
            assert cond["status"] == "True", cond
            follow, got = _split_after(flow, canary, watch.seen[weight], COUNT)
            print(
                f"\nstep {weight}%: {dict(got)} of {COUNT}; "
                f"traffic followed the write in {follow:.2f}s"
            )
            assert got[None] == 0, got
            assert abs(got[canary] - COUNT * weight // 100) <= 2, got
            assert got[canary] + got[stable] == COUNT, got
            if weight == 20:
                _print_route(route)
                changed = _diff(kubectl)
                assert changed and all(c.startswith("weight:") for c in changed), changed
                # The user's second rule and everything else stayed as written.
                assert route["spec"]["rules"][1]["backendRefs"] == [
                    {
                        "group": "",
                        "kind": "Service",
                        "name": f"{NAME}-stable",
                        "port": 80,
                        "weight": 1,
                    }
                ]
            _annotate(kubectl, "promote")
        after = _wait(kubectl, "the canary promoted", lambda s: s.get("stableVersion") != stable)
        wait_for(
            "all traffic on the new stable",
            lambda: watch.seen.get(0, 0) > 0 and _weights(_route(kubectl))[f"{NAME}-canary"] == 0,
        )
        time.sleep(2)
    failed = [t for t, v in flow.log if v is None]
    print(f"\nrollout: {len(flow.log)} requests through the gateway, {len(failed)} failed")
    assert not failed
    assert after["phase"] == "Serving"
    assert gallery.count(50) == Counter({after["stableVersion"]: 50})
    assert _diff(kubectl) == []


def _print_route(route: dict[str, Any]) -> None:
    shown = {k: route[k] for k in ("apiVersion", "kind")}
    shown["metadata"] = {"name": NAME, "namespace": NS}
    shown["spec"] = route["spec"]
    print(f"\n$ kubectl -n {NS} get httproute {NAME} -o yaml  # mid-canary (spec)\n")
    print(yaml.safe_dump(shown, sort_keys=False))


def test_a_rollback_sends_all_traffic_to_stable_without_a_failed_request(
    kubectl: Kubectl, gallery: Client
) -> None:
    stable = _status(kubectl)["stableVersion"]
    _annotate(kubectl, "rebuild")
    mid = _wait(kubectl, "the canary paused at 20%", _paused_at(1), timeout=420)
    canary = mid["canaryVersion"]
    with Flow(gallery) as flow:
        time.sleep(2)
        aborted_at = time.monotonic()
        _annotate(kubectl, "abort")
        _wait(kubectl, "rolled back", lambda s: s.get("phase") == "RolledBack", timeout=60)
        wait_for(
            "the canary's pods gone",
            lambda: (
                not kubectl.json(
                    "-n",
                    NS,
                    "get",
                    "pods",
                    "-l",
                    f"knn.dev/version={canary},knn.dev/component=serving",
                )["items"]
            ),
            timeout=120,
        )
        time.sleep(2)
    answers = flow.log
    failed = [t - aborted_at for t, v in answers if v is None]
    last_canary = max((t for t, v in answers if v == canary), default=aborted_at) - aborted_at
    tail = [v for _, v in answers[-200:]]
    print(
        f"\nrollback: {len(answers)} requests, {len(failed)} failed, last canary answer "
        f"{last_canary:.2f}s after the abort annotation"
    )
    assert sum(v == canary for _, v in answers) > 0  # the canary did take traffic
    assert not failed, failed
    assert tail == [stable] * len(tail)
    assert _weights(_route(kubectl)) == {f"{NAME}-stable": 100, f"{NAME}-canary": 0}
