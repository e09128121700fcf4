"""Services: one per version (for analysis and canary routing) and the stable
`<name>` Service that clients use, pointed at the stable version."""

from __future__ import annotations

from .common import Manifest, Owner, deployment_name, labels, metadata


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


def version_service(owner: Owner, version: str) -> Manifest:
    selector = labels(owner, version, "serving")
    return _service(owner, deployment_name(owner, version), selector, selector)


def stable_service(owner: Owner, version: str) -> Manifest:
    selector = labels(owner, version, "serving")
    return _service(owner, owner.name, selector, labels(owner, None, "stable"))
