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


def index_service(owner: Owner) -> Manifest:
    """`<name>`, selecting every serving revision of the index (the replica router)."""
    selector = labels(owner, component=SERVING_COMPONENT)
    return _service(owner, owner.name, selector, labels(owner, None, "stable"))
