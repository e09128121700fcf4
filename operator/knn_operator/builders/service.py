"""Services: one per revision (for analysis and for routers that address a
revision), and the `<name>` Service that clients use."""

from __future__ import annotations

from .common import Manifest, Owner, deployment_name, labels, metadata

SERVING_COMPONENT = "serving"


def _service(owner: Owner, name: str, selector: dict[str, str], lbls: dict[str, str]) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner, name, lbls),
        "spec": {
            "selector": selector,
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def revision_selector(owner: Owner, revision: str) -> dict[str, str]:
    return labels(owner, None, SERVING_COMPONENT, revision=revision)


def revision_service(owner: Owner, revision: str) -> Manifest:
    selector = revision_selector(owner, revision)
    return _service(owner, deployment_name(owner, revision), selector, selector)


def index_service(owner: Owner, revision: str | None = None) -> Manifest:
    """`<name>`: every serving revision of the index (the replica router), or one."""
    if revision is None:
        selector = labels(owner, component=SERVING_COMPONENT)
    else:
        selector = revision_selector(owner, revision)
    return _service(owner, owner.name, selector, labels(owner, None, "stable"))


def role_service(owner: Owner, suffix: str, revision: str) -> Manifest:
    """`<name>-stable` or `<name>-canary` for a route router: the revision in that role."""
    selector = revision_selector(owner, revision)
    return _service(owner, owner.name + suffix, selector, labels(owner, None, suffix[1:]))
