"""Route routers, pure: reading and setting the weights of a route the user owns
without touching anything else in it, and the planner driving a rollout through them."""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass, replace
from typing import Any

import pytest
from knn_contracts import api
from knn_devtools.argocd import without_ignored
from knn_operator import gitops
from knn_operator.builders.common import Owner
from knn_operator.models.knnindex import KnnIndexSpec, WorkloadStatus
from knn_operator.observe import DeploymentState, JobState
from knn_operator.planning import Plan, plan
from knn_operator.routers.routes import (
    RouteState,
    read_http_route,
    read_subsets,
    read_virtual_service,
    set_route,
    set_subsets,
)
from knn_operator.routers.weighted import WeightedRouter, route_target

from tests.unit.test_operator_planning import (
    NOW,
    SETTINGS,
    curved_job,
    dep,
    observed,
    replicas_of,
    serving_at,
    spec,
)

OWNER = Owner("products", "shop", "uid")
GW = route_target(OWNER, "HTTPRoute", "products")
VS = route_target(OWNER, "VirtualService", "products")
DR = route_target(OWNER, "VirtualService", "products", "products")


def http_route(stable: int | None = 100, canary: int | None = 0) -> dict[str, Any]:
    def ref(name: str, weight: int | None) -> dict[str, Any]:
        return {"name": name, "port": 80, **({} if weight is None else {"weight": weight})}

    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "products", "namespace": "shop", "generation": 3},
        "spec": {
            "parentRefs": [{"name": "gw", "namespace": "gateways"}],
            "hostnames": ["products.example"],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
                    "backendRefs": [{"name": "admin", "port": 8080}],
                },
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/v1"}}],
                    "filters": [
                        {
                            "type": "RequestHeaderModifier",
                            "requestHeaderModifier": {"add": [{"name": "x", "value": "y"}]},
                        }
                    ],
                    "backendRefs": [
                        ref("products-stable", stable),
                        ref("products-canary", canary),
                    ],
                },
            ],
        },
        "status": {
            "parents": [
                {
                    "parentRef": {"name": "gw"},
                    "conditions": [{"type": "Accepted", "status": "True", "observedGeneration": 3}],
                }
            ]
        },
    }


def test_an_http_route_is_read_as_the_canary_share() -> None:
    assert read_http_route(http_route(100, 0), GW).weight == 0
    assert read_http_route(http_route(70, 30), GW).weight == 30
    assert read_http_route(http_route(1, 1), GW).weight == 50
    assert read_http_route(http_route(None, None), GW).weight == 50  # default weight 1
    assert read_http_route(http_route(0, 0), GW).weight == 0
    assert read_http_route(http_route(), GW).accepted is True


def test_setting_weights_changes_only_our_weights() -> None:
    before = http_route(100, 0)
    after = set_route(before, GW, 25)
    assert read_http_route(after, GW).weight == 25
    expected = copy.deepcopy(before)
    expected["spec"]["rules"][1]["backendRefs"][0]["weight"] = 75
    expected["spec"]["rules"][1]["backendRefs"][1]["weight"] = 25
    assert after == expected  # matches, filters, parentRefs, the other rule, order: kept
    assert before == http_route(100, 0)  # the input is not modified


def test_a_route_without_both_of_our_services_is_refused_by_name() -> None:
    route = http_route()
    del route["spec"]["rules"][1]["backendRefs"][1]
    state = read_http_route(route, GW)
    assert not state.usable and state.reason == "RouteMisconfigured"
    assert state.problem == (
        "HTTPRoute products: no rule has backendRefs to Services products-stable and "
        "products-canary"
    )
    # A rule naming only the stable (health checks pinned to it) is left as it is.
    pinned = http_route(90, 10)
    pinned["spec"]["rules"].append({"backendRefs": [{"name": "products-stable", "port": 80}]})
    assert read_http_route(pinned, GW).weight == 10
    assert set_route(pinned, GW, 50)["spec"]["rules"][2] == pinned["spec"]["rules"][2]
    other = http_route()
    other["spec"]["rules"] = other["spec"]["rules"][:1]
    assert "no rule has backendRefs to Services products-stable and products-canary" in (
        read_http_route(other, GW).problem or ""
    )


def test_backend_refs_to_another_namespace_or_kind_are_not_ours() -> None:
    route = http_route()
    refs = route["spec"]["rules"][1]["backendRefs"]
    refs[1]["namespace"] = "elsewhere"
    assert not read_http_route(route, GW).usable
    refs[1]["namespace"] = "shop"
    refs[1]["kind"] = "ServiceImport"
    assert not read_http_route(route, GW).usable


def test_an_old_generation_or_a_refusal_is_not_accepted() -> None:
    route = http_route()
    route["metadata"]["generation"] = 4
    assert read_http_route(route, GW).accepted is False
    route["status"] = {}
    assert read_http_route(route, GW).accepted is None


def test_rules_that_disagree_are_inconsistent() -> None:
    route = http_route(90, 10)
    second = copy.deepcopy(route["spec"]["rules"][1])
    second["backendRefs"][0]["weight"], second["backendRefs"][1]["weight"] = 50, 50
    route["spec"]["rules"].append(second)
    state = read_http_route(route, GW)
    assert state.weight == 10 and not state.consistent
    fixed = set_route(route, GW, 20)
    assert read_http_route(fixed, GW).consistent and read_http_route(fixed, GW).weight == 20


def virtual_service(hosts: tuple[str, str], weights: tuple[int | None, int | None]) -> Any:
    def dest(host: str, weight: int | None, subset: str | None) -> dict[str, Any]:
        d: dict[str, Any] = {"host": host, **({"subset": subset} if subset else {})}
        return {"destination": d, **({} if weight is None else {"weight": weight})}

    subsets = hosts == ("products", "products")
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "products", "namespace": "shop", "generation": 1},
        "spec": {
            "hosts": ["products.example"],
            "gateways": ["mesh"],
            "http": [
                {"match": [{"uri": {"prefix": "/health"}}], "route": [dest("probe", None, None)]},
                {
                    "retries": {"attempts": 3},
                    "route": [
                        dest(hosts[0], weights[0], "stable" if subsets else None),
                        dest(hosts[1], weights[1], "canary" if subsets else None),
                    ],
                },
            ],
        },
    }


def test_a_virtual_service_by_hosts_keeps_everything_but_our_weights() -> None:
    hosts = ("products-stable.shop.svc.cluster.local", "products-canary")
    vs = virtual_service(hosts, (100, 0))
    assert read_virtual_service(vs, VS).weight == 0
    after = set_route(vs, VS, 40)
    assert read_virtual_service(after, VS).weight == 40
    expected = copy.deepcopy(vs)
    expected["spec"]["http"][1]["route"][0]["weight"] = 60
    expected["spec"]["http"][1]["route"][1]["weight"] = 40
    assert after == expected
    # A host in another namespace is not ours.
    other = virtual_service(("products-stable.other", "products-canary"), (100, 0))
    assert "no http route has destinations with hosts products-stable" in (
        read_virtual_service(other, VS).problem or ""
    )


def test_a_virtual_service_without_weights_sends_all_to_stable() -> None:
    vs = virtual_service(("products-stable", "products-canary"), (None, None))
    assert read_virtual_service(vs, VS).weight == 0


def test_subsets_of_a_destination_rule_point_at_revisions() -> None:
    vs = virtual_service(("products", "products"), (90, 10))
    assert read_virtual_service(vs, DR).weight == 10
    dr = {
        "spec": {
            "host": "products",
            "subsets": [
                {"name": "stable", "labels": {"app": "x"}},
                {"name": "canary", "labels": {"app": "x", api.LABEL_REVISION: "old"}},
                {"name": "other", "labels": {"app": "y"}},
            ],
        }
    }
    assert read_subsets(dr, DR) == (None, "old")
    moved = set_subsets(dr, DR, "va-1", "vb-2")
    assert read_subsets(moved, DR) == ("va-1", "vb-2")
    assert moved["spec"]["subsets"][0]["labels"]["app"] == "x"
    assert moved["spec"]["subsets"][2] == dr["spec"]["subsets"][2]
    assert read_subsets({"spec": {"subsets": []}}, DR) == (
        "DestinationRule products has no subset stable"
    )


@pytest.mark.parametrize(
    ("replicas", "weight", "canary"), [(4, 0, 0), (4, 10, 1), (4, 50, 2), (4, 100, 4), (1, 30, 1)]
)
def test_the_canary_runs_enough_pods_for_its_share(replicas: int, weight: int, canary: int) -> None:
    r = WeightedRouter("gatewayAPI", GW, None)
    assert r.split(replicas, weight).canary == canary
    assert r.split(replicas, weight).stable == replicas


def test_the_services_a_route_names_select_one_revision_each() -> None:
    r = WeightedRouter("gatewayAPI", GW, None)
    svcs = {s["metadata"]["name"]: s["spec"]["selector"] for s in r.objects(OWNER, "a-1", None, 0)}
    assert svcs["products-stable"][api.LABEL_REVISION] == "a-1"
    assert svcs["products-canary"][api.LABEL_REVISION] == "a-1"  # no canary: the stable
    assert svcs["products"][api.LABEL_REVISION] == "a-1"
    svcs = {
        s["metadata"]["name"]: s["spec"]["selector"] for s in r.objects(OWNER, "a-1", "b-2", 10)
    }
    assert svcs["products-canary"][api.LABEL_REVISION] == "b-2"
    with_dr = WeightedRouter("istio", DR, None)
    [index] = [
        s for s in with_dr.objects(OWNER, "a-1", "b-2", 10) if s["metadata"]["name"] == "products"
    ]
    assert api.LABEL_REVISION not in index["spec"]["selector"]  # subsets pick among all


# -- the planner through a rollout ---------------------------------------------------------

GATEWAY = {"trafficRouter": {"gatewayAPI": {"httpRoute": "products"}}}


def _at(weight: int | None, *, accepted: bool | None = True, consistent: bool = True) -> RouteState:
    return RouteState(GW, weight=weight, generation=1, accepted=accepted, consistent=consistent)


def _rollout(steps: list[dict[str, Any]]) -> tuple[Any, str, str, Any]:
    _, v, st = serving_at(64)
    s2 = spec(hnsw={"efSearch": 96}, serving={"replicas": 2}, rollout={**GATEWAY, "steps": steps})
    old = st.stable_revision
    assert old is not None
    return s2, v, old, st


@dataclass
class Canary:
    """A rollout walked to its first step: the canary's pod up, the route at `weight`."""

    spec: KnnIndexSpec
    jobs: dict[str, JobState]
    deps: dict[str, DeploymentState]
    old: str
    new: str
    status: WorkloadStatus

    def next(self, route_weight: int, **extra: Any) -> Plan:
        obs = observed(self.spec, self.status, self.jobs, self.deps, **extra)
        return plan(replace(obs, route=_at(route_weight)), SETTINGS, NOW)


def _canary_at(weight: int, then: dict[str, Any]) -> Canary:
    s2, v, old, st = _rollout([{"setWeight": weight}, then])
    jobs = {v: curved_job(v)}
    p = plan(replace(observed(s2, st, jobs, {old: dep(old, 2)}), route=_at(0)), SETTINGS, NOW)
    new = p.status.canary_revision
    assert new is not None
    deps = {old: dep(old, 2), new: dep(new, 1, replicas=1)}
    q = plan(replace(observed(s2, p.status, jobs, deps), route=_at(0)), SETTINGS, NOW)
    r = plan(replace(observed(s2, q.status, jobs, deps), route=_at(weight)), SETTINGS, NOW)
    return Canary(s2, jobs, deps, old, new, r.status)


def test_a_gateway_rollout_moves_weights_only_once_the_canary_answers() -> None:
    s2, v, old, st = _rollout([{"setWeight": 10}, {"setWeight": 50}])
    jobs = {v: curved_job(v)}
    # The canary starts: its pods are not up, the route stays at 0.
    p = plan(replace(observed(s2, st, jobs, {old: dep(old, 2)}), route=_at(0)), SETTINGS, NOW)
    new = p.status.canary_revision
    assert new is not None and replicas_of(p)[new] == 1
    assert not p.routes
    # One canary pod answers: 10% is written, the step waits for the read-back.
    deps = {old: dep(old, 2), new: dep(new, 1, replicas=1)}
    q = plan(replace(observed(s2, p.status, jobs, deps), route=_at(0)), SETTINGS, NOW)
    assert [(w.weight, w.stable_revision, w.canary_revision) for w in q.routes] == [(10, old, new)]
    assert q.status.current_step == 0 and q.requeue_after == 1.0
    assert "RouteWeightsSet" in [e.reason for e in q.events]
    # The route reads back at 10: the step completes; 50 needs a second canary pod.
    r = plan(replace(observed(s2, q.status, jobs, deps), route=_at(10)), SETTINGS, NOW)
    assert r.status.current_step == 1 and replicas_of(r)[new] == 1
    assert [w.weight for w in r.routes] == [50]  # one pod up already carries its share
    assert r.status.canary_weight == 10  # what the route says, not what was asked


def test_someone_elses_weights_are_reported_and_set_again() -> None:
    c = _canary_at(10, {"pause": {}})
    assert c.status.route is not None and c.status.route.weight == 10
    # A GitOps sync puts the route back to 100/0 mid-rollout.
    s = c.next(0)
    changed = [e for e in s.events if e.reason == "RouteWeightsChanged"]
    assert len(changed) == 1 and "is 0%, the operator set 10%" in changed[0].message
    assert [w.weight for w in s.routes] == [10]
    [cond] = [c for c in s.status.conditions if c.type == "TrafficRouted"]
    assert (cond.status, cond.reason) == ("False", "RouteWeightsChanged")
    t = replace(c, status=s.status).next(10)
    assert not t.routes and not [e for e in t.events if e.reason.startswith("Route")]
    [cond] = [c for c in t.status.conditions if c.type == "TrafficRouted"]
    assert (cond.status, cond.reason) == ("True", "RouteInSync")


def test_an_abort_restores_all_traffic_to_stable_in_one_write() -> None:
    c = _canary_at(30, {"pause": {}})
    a = c.next(30, annotations={api.ANNOTATION_ABORT: "1"})
    assert a.status.rolled_back is not None
    assert [(w.weight, w.stable_revision, w.canary_revision) for w in a.routes] == [
        (0, c.old, c.old)
    ]
    # The canary's pod keeps answering until the route reads back at 0, then stops.
    assert replicas_of(a)[c.new] == 1
    b = replace(c, status=a.status).next(0)
    assert replicas_of(b)[c.new] == 0 and not b.routes


def test_a_route_the_gateway_has_not_accepted_holds_the_step() -> None:
    s2, v, old, st = _rollout([{"setWeight": 10}, {"setWeight": 50}])
    jobs = {v: curved_job(v)}
    p = plan(replace(observed(s2, st, jobs, {old: dep(old, 2)}), route=_at(0)), SETTINGS, NOW)
    new = p.status.canary_revision
    assert new is not None
    deps = {old: dep(old, 2), new: dep(new, 1, replicas=1)}
    q = plan(replace(observed(s2, p.status, jobs, deps), route=_at(0)), SETTINGS, NOW)
    r = plan(
        replace(observed(s2, q.status, jobs, deps), route=_at(10, accepted=False)), SETTINGS, NOW
    )
    assert r.status.current_step == 0 and not r.routes and r.requeue_after == 5.0
    [cond] = [c for c in r.status.conditions if c.type == "TrafficRouted"]
    assert cond.reason == "RouteNotAccepted"


def test_back_to_the_replica_router_removes_the_role_services() -> None:
    s1, v, st = serving_at(64)
    old = st.stable_revision
    assert old is not None
    s_gw = spec(hnsw={"efSearch": 64}, rollout=GATEWAY)
    jobs = {v: curved_job(v)}
    p = plan(replace(observed(s_gw, st, jobs, {old: dep(old, 2)}), route=_at(0)), SETTINGS, NOW)
    assert p.status.route is not None and p.status.route.weight == 0
    names = {m["metadata"]["name"] for m in p.apply if m["kind"] == "Service"}
    assert {"products-stable", "products-canary"} <= names
    back = plan(observed(s1, p.status, jobs, {old: dep(old, 2)}), SETTINGS, NOW)
    assert ("Service", "products-stable") in back.delete and back.status.route is None
    assert not [c for c in back.status.conditions if c.type == "TrafficRouted"]


def test_promotion_points_both_services_at_the_new_stable_and_sets_it_all() -> None:
    s2, v, old, st = _rollout([{"setWeight": 50}])
    jobs = {v: curved_job(v)}
    p = plan(replace(observed(s2, st, jobs, {old: dep(old, 2)}), route=_at(0)), SETTINGS, NOW)
    new = p.status.canary_revision
    assert new is not None
    deps = {old: dep(old, 2), new: dep(new, 1, replicas=1)}
    q = plan(replace(observed(s2, p.status, jobs, deps), route=_at(0)), SETTINGS, NOW)
    later = NOW + dt.timedelta(seconds=1)
    r = plan(replace(observed(s2, q.status, jobs, deps), route=_at(50)), SETTINGS, later)
    assert r.status.stable_revision == new and r.status.canary_revision is None
    svcs = {m["metadata"]["name"]: m for m in r.apply if m["kind"] == "Service"}
    for name in ("products-stable", "products-canary", "products"):
        assert svcs[name]["spec"]["selector"][api.LABEL_REVISION] == new
    assert [(w.weight, w.stable_revision) for w in r.routes] == [(0, new)]
    # The replaced stable stays warm (no route sends it traffic) for scaleDownDelaySeconds.
    assert replicas_of(r)[old] == 2


# -- GitOps: Argo CD ignores exactly what the operator changes ---------------------------


def _ignored(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    group = obj["apiVersion"].split("/")[0]
    return without_ignored(obj, gitops.ROUTE_IGNORED[(group, kind)])


def test_argo_cd_ignores_our_http_route_weights_and_nothing_else() -> None:
    git = http_route(100, 0)
    live = set_route(git, GW, 30)
    assert live != git and _ignored("HTTPRoute", live) == _ignored("HTTPRoute", git)
    # A weight the user owns, or a match, still shows as a difference.
    git["spec"]["rules"][0]["backendRefs"][0]["weight"] = 5
    edited = copy.deepcopy(live)
    edited["spec"]["rules"][0]["backendRefs"][0]["weight"] = 7
    assert _ignored("HTTPRoute", edited) != _ignored("HTTPRoute", git)
    edited = copy.deepcopy(live)
    edited["spec"]["rules"][1]["matches"][0]["path"]["value"] = "/v2"
    assert _ignored("HTTPRoute", edited) != _ignored("HTTPRoute", live)


def test_argo_cd_ignores_our_virtual_service_weights_by_host_or_subset() -> None:
    for target, hosts in (
        (VS, ("products-stable.shop", "products-canary")),
        (DR, ("products", "products")),
    ):
        git = virtual_service(hosts, (100, 0))
        live = set_route(git, target, 40)
        assert _ignored("VirtualService", live) == _ignored("VirtualService", git)
        other = copy.deepcopy(live)
        other["spec"]["http"][1]["retries"]["attempts"] = 9
        assert _ignored("VirtualService", other) != _ignored("VirtualService", live)


def test_argo_cd_ignores_the_revision_labels_of_our_subsets_only() -> None:
    git = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "spec": {
            "subsets": [
                {"name": "stable", "labels": {"app": "x"}},
                {"name": "canary", "labels": {"app": "x"}},
                {"name": "other", "labels": {api.LABEL_REVISION: "pinned"}},
            ]
        },
    }
    live = set_subsets(git, DR, "a-1", "b-2")
    assert _ignored("DestinationRule", live) == _ignored("DestinationRule", git)
    other = copy.deepcopy(live)
    other["spec"]["subsets"][2]["labels"][api.LABEL_REVISION] = "moved"
    assert _ignored("DestinationRule", other) != _ignored("DestinationRule", live)
