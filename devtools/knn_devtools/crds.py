"""Installs CustomResourceDefinitions with the real kubectl and waits until they serve."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path

from knn_devtools.kubectl import Kubectl

_CRD_PREFIX = "customresourcedefinition.apiextensions.k8s.io/"


def install_crds(kubectl: Kubectl, paths: Iterable[Path], *, timeout: float = 60.0) -> list[str]:
    """Server-side applies CRD files or directories, then waits for Established.

    Returns the names of the CRDs applied. Server-side apply keeps large CRDs
    (prometheus-operator's) clear of the client-side last-applied annotation's
    256 KiB limit. Only CRDs are waited for; other kinds in the files are applied
    but not waited on.
    """
    files = [str(p) for p in paths]
    if not files:
        return []
    args = ["apply", "--server-side", "-o", "name"]
    for f in files:
        args += ["-f", f]
    applied = kubectl.run(*args, timeout=timeout).stdout.split()
    names = [a.removeprefix(_CRD_PREFIX) for a in applied if a.startswith(_CRD_PREFIX)]
    if names:
        wait_established(kubectl, names, timeout=timeout)
    return names


def wait_established(kubectl: Kubectl, names: Iterable[str], *, timeout: float = 60.0) -> None:
    """Polls until every CRD reports Established=True. Not `kubectl wait`: on a CRD
    created a moment ago, whose status has no conditions yet, it fails at once
    ("conditions accessor error: <nil>") instead of waiting."""
    pending = list(names)
    deadline = time.monotonic() + timeout
    while pending:
        out = kubectl.run("get", *(f"crd/{n}" for n in pending), "-o", "json", timeout=30)
        doc = json.loads(out.stdout)
        items = doc.get("items", [doc])  # one name: the object itself, not a List
        established = {
            item["metadata"]["name"]
            for item in items
            for c in (item.get("status") or {}).get("conditions") or []
            if c.get("type") == "Established" and c.get("status") == "True"
        }
        pending = [n for n in pending if n not in established]
        if pending and time.monotonic() > deadline:
            raise TimeoutError(f"CRDs not Established within {timeout:.0f}s: {pending}")
        if pending:
            time.sleep(0.2)
