"""The replica router: replicas for a weight, the weight it delivers, its objects."""

from __future__ import annotations

import pytest
from knn_contracts import api
from knn_operator.builders.common import Owner
from knn_operator.models.knnindex import ReplicasRouter, TrafficRouter
from knn_operator.routers import Split, router_for, router_name
from knn_operator.routers.replicas import MAX_CANARY_FACTOR, ReplicaRouter
from knn_operator.routers.weighted import WeightedRouter

R = ReplicaRouter()


@pytest.mark.parametrize(
    ("replicas", "weight", "split", "delivered"),
    [
        (2, 0, Split(2, 0), 0),
        (2, 10, Split(2, 1), 33),  # the smallest step above zero: one pod
        (2, 40, Split(2, 1), 33),
        (2, 50, Split(2, 2), 50),
        (2, 70, Split(2, 5), 71),
        (2, 90, Split(2, 18), 90),
        (2, 99, Split(2, 2 * MAX_CANARY_FACTOR), 90),  # capped
        (2, 100, Split(2, 2), 50),  # full size beside the stable until promotion
        (10, 10, Split(10, 1), 9),
        (10, 25, Split(10, 3), 23),
        (0, 50, Split(0, 1), 100),  # a stable scaled to zero by the user
    ],
)
def test_the_canary_share_follows_replicas(
    replicas: int, weight: int, split: Split, delivered: int
) -> None:
    got = R.split(replicas, weight)
    assert got == split
    assert R.delivered(got.stable, got.canary, weight) == delivered


def test_the_stable_keeps_its_size_during_a_rollout() -> None:
    assert all(R.split(3, w).stable == 3 for w in range(0, 101, 5))


def test_nothing_available_delivers_nothing() -> None:
    assert R.delivered(0, 0, 50) == 0


def test_one_service_selects_every_serving_revision() -> None:
    [svc] = R.objects(Owner("products", "shop", "uid"), "va-1", "vb-2", 50)
    assert svc["metadata"]["name"] == "products"
    assert svc["spec"]["selector"][api.LABEL_INDEX] == "products"
    assert svc["spec"]["selector"][api.LABEL_COMPONENT] == "serving"
    assert api.LABEL_REVISION not in svc["spec"]["selector"]


def test_the_registry_picks_the_router_the_spec_names() -> None:
    owner = Owner("products", "shop", "uid")
    assert isinstance(router_for(TrafficRouter(replicas=ReplicasRouter()), owner), ReplicaRouter)
    gateway = TrafficRouter.model_validate({"gatewayAPI": {"httpRoute": "r"}})
    router = router_for(gateway, owner)
    assert isinstance(router, WeightedRouter) and router_name(gateway) == "gatewayAPI"
    assert router.target.kind == "HTTPRoute" and router.target.name == "r"
    assert (router.target.stable, router.target.canary) == ("products-stable", "products-canary")
    istio = TrafficRouter.model_validate(
        {"istio": {"virtualService": "vs", "destinationRule": "dr"}}
    )
    target = router_for(istio, owner).target  # type: ignore[union-attr]
    assert (target.kind, target.stable, target.canary) == ("VirtualService", "stable", "canary")
