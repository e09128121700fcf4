"""CRDs of other projects that the operator writes to, from their Go modules.

The YAML comes from the Go module cache at the versions pinned in
hack/versions.env (``go mod download`` verifies it against the checksum
database), so nothing third-party is copied into this repository.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import yaml

from knn_devtools.tools import Versions, cache_dir

GATEWAY_API: Final = "sigs.k8s.io/gateway-api"
ISTIO_API: Final = "istio.io/api"
PROMETHEUS_OPERATOR: Final = "github.com/prometheus-operator/prometheus-operator"

# Istio ships all of its CRDs in one multi-document file.
_ISTIO_BUNDLE: Final = "kubernetes/customresourcedefinitions.gen.yaml"
_ISTIO_CRDS: Final = ("virtualservices.networking.istio.io", "destinationrules.networking.istio.io")
_GATEWAY_CRDS: Final = ("config/crd/standard/gateway.networking.k8s.io_httproutes.yaml",)
_PROMETHEUS_CRDS: Final = tuple(
    f"example/prometheus-operator-crd/monitoring.coreos.com_{plural}.yaml"
    for plural in ("servicemonitors", "podmonitors", "prometheusrules")
)
_DOC_SEPARATOR: Final = re.compile(r"^---[ \t]*$", re.MULTILINE)
_METADATA_NAME: Final = re.compile(r"^  name: *(\S+)[ \t]*$", re.MULTILINE)


class ThirdPartyCRDError(RuntimeError):
    """A pinned module could not be downloaded or lacks the expected CRD file."""


@dataclass(frozen=True)
class CRDSet:
    """The CRD files of one pinned module."""

    module: str
    version: str
    files: tuple[Path, ...]


def third_party_crd_sets(versions: Versions | None = None) -> list[CRDSet]:
    """HTTPRoute (Gateway API standard channel), Istio VirtualService and
    DestinationRule, prometheus-operator ServiceMonitor, PodMonitor, PrometheusRule."""
    v = versions if versions is not None else Versions.load()
    gateway = _module_files(GATEWAY_API, v.gateway_api, _GATEWAY_CRDS)
    prometheus = _module_files(PROMETHEUS_OPERATOR, v.prometheus_operator, _PROMETHEUS_CRDS)
    istio_dir = go_module_dir(ISTIO_API, v.istio_api)
    istio = _extract_documents(
        istio_dir / _ISTIO_BUNDLE,
        _ISTIO_CRDS,
        cache_dir() / "crds" / f"istio-api-v{v.istio_api}",
    )
    return [
        CRDSet(GATEWAY_API, v.gateway_api, gateway),
        CRDSet(ISTIO_API, v.istio_api, istio),
        CRDSet(PROMETHEUS_OPERATOR, v.prometheus_operator, prometheus),
    ]


def third_party_crds(versions: Versions | None = None) -> list[Path]:
    """Every third-party CRD file, ready for ``kubectl apply -f``."""
    return [f for s in third_party_crd_sets(versions) for f in s.files]


def go_module_dir(module: str, version: str) -> Path:
    """The read-only source directory of ``module@vVERSION`` in the Go module cache."""
    ref = f"{module}@v{version.removeprefix('v')}"
    env = dict(os.environ)
    # Outside any workspace, so a go.work nearby cannot change what is fetched.
    env["GOWORK"] = "off"
    try:
        result = subprocess.run(
            ["go", "mod", "download", "-json", ref],
            capture_output=True,
            text=True,
            env=env,
            cwd=Path.home(),
            timeout=600,
            check=False,
        )
    except FileNotFoundError:
        raise ThirdPartyCRDError(
            f"cannot fetch {ref}: Go is not installed or not on PATH (Go >= 1.26 is required)"
        ) from None
    try:
        info = json.loads(result.stdout)
    except ValueError:
        raise ThirdPartyCRDError(
            f"`go mod download -json {ref}` failed (exit {result.returncode}): "
            f"{result.stderr.strip()}"
        ) from None
    if "Error" in info or "Dir" not in info:
        raise ThirdPartyCRDError(
            f"`go mod download -json {ref}` failed: {info.get('Error', result.stderr.strip())}"
            " (check the pin in hack/versions.env against `go list -m -versions`)"
        )
    return Path(info["Dir"])


def _module_files(module: str, version: str, relative: tuple[str, ...]) -> tuple[Path, ...]:
    root = go_module_dir(module, version)
    files = tuple(root / r for r in relative)
    for f in files:
        if not f.is_file():
            raise ThirdPartyCRDError(f"{module}@v{version} has no {f.relative_to(root)}")
    return files


def _extract_documents(bundle: Path, names: tuple[str, ...], out_dir: Path) -> tuple[Path, ...]:
    """Writes each named CRD of a multi-document ``bundle`` to its own file (cached)."""
    targets = tuple(out_dir / f"{name}.yaml" for name in names)
    if all(t.is_file() for t in targets):
        return targets
    if not bundle.is_file():
        raise ThirdPartyCRDError(f"{bundle} does not exist")
    by_name: dict[str, str] = {}
    for doc in _DOC_SEPARATOR.split(bundle.read_text()):
        # A regex finds the name without parsing ~1 MB of YAML in pure Python;
        # only the documents kept are parsed, to check them.
        match = _METADATA_NAME.search(doc)
        if match is not None and match.group(1) in names:
            by_name[match.group(1)] = doc
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, target in zip(names, targets, strict=True):
        doc = by_name.get(name)
        if doc is None:
            raise ThirdPartyCRDError(f"{bundle} has no CustomResourceDefinition {name}")
        parsed = yaml.safe_load(doc)
        if parsed.get("kind") != "CustomResourceDefinition" or (
            parsed.get("metadata", {}).get("name") != name
        ):
            raise ThirdPartyCRDError(f"{bundle}: the document found for {name} is not its CRD")
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        tmp.write_text(doc.lstrip("\n"))
        tmp.replace(target)
    return targets
