"""Route routers on the real API server, with the routes' real CRDs (Istio's
VirtualService and DestinationRule, Gateway API's HTTPRoute from their pinned Go
modules). Istio has no data plane here (Envoy is in no reachable registry), so its
router is verified at the object level: the weights follow the steps, the user's
other fields survive, an abort restores 100/0 in one write, and a change by someone
else mid-rollout is reported and undone. The weights' writes race a concurrent edit
for real: the API server's 409 makes the operator start again from the new object.

There is no kubelet in this tier: the test reports the Deployments available.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from knn_contracts import api
from knn_devtools.argocd import without_ignored
from knn_devtools.kubectl import Kubectl
from knn_operator import gitops
from knn_operator.builders.common import Owner
from knn_operator.kube import Kube
from knn_operator.routers.client import observe_route, write_route
from knn_operator.routers.routes import RouteWrite
from knn_operator.routers.weighted import route_target

if TYPE_CHECKING:
    from tests.controlplane import operator_support as ops
else:
    import operator_support as ops

pytestmark = [pytest.mark.controlplane]
NAME = "products"


def virtual_service(ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": NAME, "namespace": ns, "labels": {"team": "search"}},
        "spec": {
            "hosts": ["products.example.com"],
            "gateways": ["mesh", "istio-system/public"],
            "http": [
                {
                    "name": "health",
                    "match": [{"uri": {"exact": "/healthz"}}],
                    "route": [{"destination": {"host": NAME, "subset": "stable"}}],
                },
                {
                    "name": "queries",
                    "match": [{"uri": {"prefix": "/v1/"}}],
                    "retries": {"attempts": 2, "perTryTimeout": "2s"},
                    "timeout": "5s",
                    "route": [
                        {"destination": {"host": NAME, "subset": "stable"}, "weight": 100},
                        {"destination": {"host": NAME, "subset": "canary"}, "weight": 0},
                    ],
                },
            ],
        },
    }


def destination_rule(ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": NAME, "namespace": ns},
        "spec": {
            "host": NAME,
            "trafficPolicy": {"loadBalancer": {"simple": "LEAST_REQUEST"}},
            "subsets": [
                {"name": "stable", "labels": {api.LABEL_INDEX: NAME}},
                {"name": "canary", "labels": {api.LABEL_INDEX: NAME}},
            ],
        },
    }


def _weights(vs: dict[str, Any]) -> tuple[int, int]:
    route = vs["spec"]["http"][1]["route"]
    return route[0]["weight"], route[1]["weight"]


def _without_weights(vs: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = copy.deepcopy(vs["spec"])
    for entry in spec["http"][1]["route"]:
        entry.pop("weight", None)
    return spec


def _subsets(dr: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {s["name"]: s["labels"] for s in dr["spec"]["subsets"]}


def test_an_istio_rollout_moves_only_the_weights_and_an_abort_restores_them_in_one_write(
    kubectl: Kubectl,
    namespace: str,
    thirdparty_crds: list[str],
    start_operator: ops.OperatorStarter,
) -> None:
    ns = namespace
    operator = start_operator()
    ops.apply(kubectl, ns, virtual_service(ns), destination_rule(ns))
    router = {"istio": {"virtualService": NAME, "destinationRule": NAME}}
    steps = [{"setWeight": 25}, {"pause": {}}, {"setWeight": 75}, {"pause": {}}]
    spec: dict[str, Any] = {
        "serving": {"replicas": 2},
        "rollout": {"trafficRouter": router, "steps": steps},
    }
    v1 = ops.expected_version(spec)
    ops.apply(kubectl, ns, ops.knn_index(NAME, spec))
    ops.build_and_serve(kubectl, ns, NAME, v1, operator)
    stable = ops.status_of(kubectl, ns, NAME)["stableRevision"]

    def vs() -> dict[str, Any]:
        got = ops.get(kubectl, "virtualservice", NAME, ns)
        assert got is not None
        return got

    def dr() -> dict[str, Any]:
        got = ops.get(kubectl, "destinationrule", NAME, ns)
        assert got is not None
        return got

    user = _without_weights(vs())
    ops.wait_for(
        "subsets at the stable", lambda: _subsets(dr())["canary"].get(api.LABEL_REVISION) == stable
    )
    assert _weights(vs()) == (100, 0)
    assert _subsets(dr())["stable"] == {api.LABEL_INDEX: NAME, api.LABEL_REVISION: stable}

    ops.apply(kubectl, ns, ops.knn_index(NAME, ops.merge(spec, {"hnsw": {"efSearch": 96}})))
    canary = ops.wait_for(
        "a canary",
        lambda: ops.status_of(kubectl, ns, NAME).get("canaryRevision"),
        diagnostics=operator.log_tail,
    )
    ops.make_available(kubectl, ns, f"{NAME}-{canary}")

    def paused_at(step: int) -> dict[str, Any] | None:
        s = ops.status_of(kubectl, ns, NAME)
        r = s.get("rollout") or {}
        return s if r.get("step") == step and r.get("pausedReason") else None

    mid = ops.wait_for("paused at 25%", lambda: paused_at(1), diagnostics=operator.log_tail)
    assert _weights(vs()) == (75, 25) and mid["canaryWeight"] == 25
    assert _subsets(dr())["canary"][api.LABEL_REVISION] == canary
    assert _subsets(dr())["stable"][api.LABEL_REVISION] == stable
    assert _without_weights(vs()) == user  # matches, retries, the other route: as written
    # What Argo CD would diff with the ignoreDifferences of gitops/argocd: nothing.
    for kind, git, live in (
        ("VirtualService", virtual_service(ns), vs()),
        ("DestinationRule", destination_rule(ns), dr()),
    ):
        paths = gitops.ROUTE_IGNORED[("networking.istio.io", kind)]
        assert git["spec"] != live["spec"]
        assert without_ignored({"spec": git["spec"]}, paths) == without_ignored(
            {"spec": live["spec"]}, paths
        )
    assert vs()["metadata"]["labels"] == {"team": "search"}

    # Someone else (a GitOps sync) puts the route back mid-rollout: reported, undone.
    kubectl.run(
        "-n", ns, "patch", "virtualservice", NAME, "--type=json", "-p",
        json.dumps([
            {"op": "replace", "path": "/spec/http/1/route/0/weight", "value": 100},
            {"op": "replace", "path": "/spec/http/1/route/1/weight", "value": 0},
        ]),
    )  # fmt: skip
    ops.wait_for("the weights set again", lambda: _weights(vs()) == (75, 25), timeout=30)
    assert ("Warning", "RouteWeightsChanged") in ops.event_reasons(kubectl, ns, NAME)

    kubectl.run("-n", ns, "annotate", "knn", NAME, f"knn.dev/promote={time.time()}")
    ops.make_available(kubectl, ns, f"{NAME}-{canary}")
    ops.wait_for("paused at 75%", lambda: paused_at(3), diagnostics=operator.log_tail)
    assert _weights(vs()) == (25, 75)

    before = vs()["metadata"]["generation"]
    kubectl.run("-n", ns, "annotate", "knn", NAME, f"knn.dev/abort={time.time()}")
    ops.wait_phase(kubectl, ns, NAME, "RolledBack", operator)
    ops.wait_for("100/0", lambda: _weights(vs()) == (100, 0), timeout=30)
    assert vs()["metadata"]["generation"] == before + 1  # one write
    assert _subsets(dr())["canary"][api.LABEL_REVISION] == stable
    assert _without_weights(vs()) == user
    ops.wait_for(
        "TrafficRouted in sync",
        lambda: (
            (c := ops.condition({"status": ops.status_of(kubectl, ns, NAME)}, "TrafficRouted"))
            and c["status"] == "True"
        ),
        diagnostics=operator.log_tail,
    )


def test_a_route_without_our_entries_holds_the_canary_with_its_reason(
    kubectl: Kubectl,
    namespace: str,
    thirdparty_crds: list[str],
    start_operator: ops.OperatorStarter,
) -> None:
    ns = namespace
    operator = start_operator()
    route: dict[str, Any] = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": NAME, "namespace": ns},
        "spec": {"rules": [{"backendRefs": [{"name": NAME, "port": 80}]}]},
    }
    ops.apply(kubectl, ns, route)
    spec = {"rollout": {"trafficRouter": {"gatewayAPI": {"httpRoute": NAME}}}}
    v1 = ops.expected_version(spec)
    ops.apply(kubectl, ns, ops.knn_index(NAME, spec))
    ops.build_and_serve(kubectl, ns, NAME, v1, operator)
    ops.apply(kubectl, ns, ops.knn_index(NAME, ops.merge(spec, {"hnsw": {"efSearch": 96}})))
    status = ops.wait_for(
        "the canary held",
        lambda: (
            s
            if "waits for its route"
            in ((s := ops.status_of(kubectl, ns, NAME)).get("message") or "")
            else None
        ),
        diagnostics=operator.log_tail,
    )
    assert status.get("canaryRevision") is None
    routed = ops.condition({"status": status}, "TrafficRouted")
    assert routed is not None and routed["reason"] == "RouteMisconfigured", routed
    assert (
        "no rule has backendRefs to Services products-stable and products-canary"
        in routed["message"]
    )
    assert ("Warning", "RouteMisconfigured") in ops.event_reasons(kubectl, ns, NAME)
    # Fixed by the user: the canary proceeds.
    route["spec"]["rules"][0]["backendRefs"] = [
        {"name": f"{NAME}-stable", "port": 80, "weight": 100},
        {"name": f"{NAME}-canary", "port": 80, "weight": 0},
    ]
    ops.apply(kubectl, ns, route)
    ops.wait_for(
        "a canary",
        lambda: ops.status_of(kubectl, ns, NAME).get("canaryRevision"),
        timeout=60,
        diagnostics=operator.log_tail,
    )


def test_a_weights_write_racing_a_user_edit_keeps_the_edit(
    kubectl: Kubectl, namespace: str, thirdparty_crds: list[str], tmp_path: Path
) -> None:
    """The write reads the route, the user edits it, the write's PUT gets 409 and the
    write starts again from the user's version: both changes are kept."""
    ns = namespace
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": NAME, "namespace": ns},
        "spec": {
            "rules": [
                {
                    "backendRefs": [
                        {"name": f"{NAME}-stable", "port": 80, "weight": 100},
                        {"name": f"{NAME}-canary", "port": 80, "weight": 0},
                    ]
                }
            ]
        },
    }
    ops.apply(kubectl, ns, route)
    target = route_target(Owner(NAME, ns, "uid"), "HTTPRoute", NAME)

    async def race() -> int:
        kube = await Kube.connect(str(kubectl.kubeconfig))
        gets = 0
        real_get = kube.get

        async def get_then_edit(
            api_version: str, kind: str, ns_: str, name: str
        ) -> dict[str, Any] | None:
            nonlocal gets
            body = await real_get(api_version, kind, ns_, name)
            gets += 1
            if gets == 1:  # the user's edit lands between the read and the write
                hostnames = json.dumps({"spec": {"hostnames": ["products.example"]}})
                kubectl.run("-n", ns, "patch", "httproute", NAME, "--type=merge", "-p", hostnames)
            return body

        kube.get = get_then_edit  # type: ignore[method-assign,assignment]
        try:
            await write_route(kube, RouteWrite(target, 30, "a", "b"))
            state = await observe_route(kube, target)
        finally:
            await kube.close()
        assert state.weight == 30
        return gets

    gets = asyncio.run(race())
    assert gets >= 2  # the first write was refused (409) and read again
    live = ops.get(kubectl, "httproute", NAME, ns)
    assert live is not None
    assert live["spec"]["hostnames"] == ["products.example"]
    refs = live["spec"]["rules"][0]["backendRefs"]
    assert [r["weight"] for r in refs] == [70, 30]


def test_a_destination_rule_without_our_subset_is_a_misconfiguration_not_a_missing_route(
    kubectl: Kubectl, namespace: str, thirdparty_crds: list[str]
) -> None:
    dr = destination_rule(namespace)
    dr["spec"]["subsets"] = dr["spec"]["subsets"][:1]  # "canary" left out
    ops.apply(kubectl, namespace, virtual_service(namespace), dr)
    target = route_target(Owner(NAME, namespace, "uid"), "VirtualService", NAME, NAME)

    async def observe() -> Any:
        kube = await Kube.connect(str(kubectl.kubeconfig))
        try:
            return await observe_route(kube, target)
        finally:
            await kube.close()

    state = asyncio.run(observe())
    assert state.reason == "RouteMisconfigured", state
    assert f"DestinationRule {NAME} has no subset canary" in (state.problem or "")
    kubectl.run("-n", namespace, "delete", "destinationrule", NAME)
    assert asyncio.run(observe()).reason == "RouteNotFound"
