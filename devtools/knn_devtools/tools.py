"""Finds the Go-built tools (kube-apiserver, etcd, kubectl, helm, ...) in the cache.

The tools are built by hack/build-tools.sh at the versions pinned in
hack/versions.env. Lookups use the versioned file names (``kubectl-v1.36.3``), not
the plain symlinks, so a cache left over from another pin is never used by mistake.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
BUILD_SCRIPT: Final = REPO_ROOT / "hack" / "build-tools.sh"
VERSIONS_FILE: Final = REPO_ROOT / "hack" / "versions.env"

# Set to 1 to make a missing tool an immediate error instead of a (slow) build.
NO_BUILD_ENV: Final = "KNN_NO_BUILD"

# Which hack/build-tools.sh group builds each tool, and which pin gives its version.
_TOOL_GROUP: Final[dict[str, tuple[str, str]]] = {
    "kube-apiserver": ("kube", "KUBE_VERSION"),
    "kube-controller-manager": ("kube", "KUBE_VERSION"),
    "kube-scheduler": ("kube", "KUBE_VERSION"),
    "kubectl": ("kube", "KUBE_VERSION"),
    "etcd": ("etcd", "ETCD_VERSION"),
    "helm": ("helm", "HELM_VERSION"),
    "kubeconform": ("kubeconform", "KUBECONFORM_VERSION"),
    "vegeta": ("vegeta", "VEGETA_VERSION"),
    # The local cluster's node (knn_devtools.cluster).
    "kubelet": ("kube", "KUBE_VERSION"),
    "kube-proxy": ("kube", "KUBE_VERSION"),
    "containerd": ("containerd", "CONTAINERD_VERSION"),
    "ctr": ("containerd", "CONTAINERD_VERSION"),
    "containerd-shim-runc-v2": ("containerd", "CONTAINERD_VERSION"),
    "runc": ("runc", "RUNC_VERSION"),
    "coredns": ("coredns", "COREDNS_VERSION"),
    "buildkitd": ("buildkit", "BUILDKIT_VERSION"),
    "buildctl": ("buildkit", "BUILDKIT_VERSION"),
    # The local cluster's Prometheus (Kubernetes service discovery); the data-plane
    # tests run Debian's `prometheus` from PATH instead.
    "prometheus": ("prometheus", "PROMETHEUS_VERSION"),
    "traefik": ("traefik", "TRAEFIK_VERSION"),
    # `make e2e-kind` only (machines with Docker).
    "kind": ("kind", "KIND_VERSION"),
}

# The CNI plugins hack/build-tools.sh builds into one directory per version.
CNI_PLUGINS: Final = ("bridge", "host-local", "loopback", "portmap")


class ToolError(RuntimeError):
    """A pinned tool is missing and could not be built."""


@dataclass(frozen=True)
class Versions:
    """The pins from hack/versions.env, without a leading ``v``."""

    kube: str
    etcd: str
    helm: str
    kubeconform: str
    gateway_api: str
    istio_api: str
    prometheus_operator: str

    @classmethod
    def load(cls, path: Path = VERSIONS_FILE) -> Versions:
        env = read_env_file(path)
        try:
            return cls(
                kube=env["KUBE_VERSION"],
                etcd=env["ETCD_VERSION"],
                helm=env["HELM_VERSION"],
                kubeconform=env["KUBECONFORM_VERSION"],
                gateway_api=env["GATEWAY_API_VERSION"],
                istio_api=env["ISTIO_API_VERSION"],
                prometheus_operator=env["PROMETHEUS_OPERATOR_VERSION"],
            )
        except KeyError as missing:
            raise ToolError(f"{path} does not pin {missing.args[0]}") from None


def read_env_file(path: Path) -> dict[str, str]:
    """Reads ``KEY=value`` lines; the file is also sourced by bash, so keep it that simple."""
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ToolError(f"{path}: cannot parse line {raw!r} (expected KEY=value)")
        values[key.strip()] = value.strip().strip("'\"")
    return values


def cache_dir() -> Path:
    """Same rule as hack/build-tools.sh and the Makefile: $KNN_CACHE_DIR, else XDG."""
    explicit = os.environ.get("KNN_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "knn-operator"


def bin_dir() -> Path:
    return cache_dir() / "bin"


def pinned_version(tool: str) -> str:
    """The pinned version of ``tool`` without a leading ``v``."""
    return read_env_file(VERSIONS_FILE)[_group_of(tool)[1]]


def tool_path(tool: str, *, build: bool | None = None) -> Path:
    """Path of the pinned build of ``tool``, building it first if it is missing.

    ``build=None`` builds unless $KNN_NO_BUILD is set. The error names the tool,
    the expected path and how to build it, because a test that cannot find
    kube-apiserver must fail loudly, never skip.
    """
    return ensure_tools(tool, build=build)[tool]


def ensure_tools(*tools: str, build: bool | None = None) -> dict[str, Path]:
    """Paths of the pinned builds of ``tools``, building the missing ones in one run."""
    paths = {t: bin_dir() / f"{t}-v{pinned_version(t)}" for t in tools}
    missing = [t for t, p in paths.items() if not _is_executable(p)]
    if not missing:
        return paths
    groups = sorted({_group_of(t)[0] for t in missing})
    if build is None:
        build = os.environ.get(NO_BUILD_ENV, "") in ("", "0")
    if not build:
        raise ToolError(
            "not built: "
            + ", ".join(f"{t} ({paths[t]} does not exist)" for t in missing)
            + f". Run `hack/build-tools.sh {' '.join(groups)}` (or `make tools`) to build."
        )
    build_tools(*groups)
    still = [str(paths[t]) for t in missing if not _is_executable(paths[t])]
    if still:
        raise ToolError(f"hack/build-tools.sh succeeded but {', '.join(still)} still missing")
    return paths


def build_tools(*groups: str) -> None:
    """Runs hack/build-tools.sh for ``groups``; its progress goes to our stderr."""
    if not BUILD_SCRIPT.is_file():
        raise ToolError(f"cannot build tools: {BUILD_SCRIPT} not found")
    cmd = ["bash", str(BUILD_SCRIPT), *groups]
    # stdout carries only the bin directory; keep it off the caller's stdout. Its
    # own session lets an interrupt stop the whole build (go and its compilers),
    # not just bash, so no orphaned build keeps the cache's build lock.
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        code = proc.wait()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        raise
    if code != 0:
        raise ToolError(
            f"`{' '.join(cmd)}` failed with exit status {code}; its output above says "
            "why (a Go toolchain >= 1.26 and network access to the Go module proxy are "
            "required)"
        )


def _group_of(tool: str) -> tuple[str, str]:
    try:
        return _TOOL_GROUP[tool]
    except KeyError:
        known = ", ".join(sorted(_TOOL_GROUP))
        raise ToolError(f"unknown tool {tool!r} (known: {known})") from None


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def cni_bin_dir(*, build: bool | None = None) -> Path:
    """The directory of the pinned CNI plugins (containerd's ``bin_dirs``), built if missing."""
    version = read_env_file(VERSIONS_FILE)["CNI_PLUGINS_VERSION"]
    directory = bin_dir() / f"cni-v{version}"
    if all(_is_executable(directory / p) for p in CNI_PLUGINS):
        return directory
    if build is None:
        build = os.environ.get(NO_BUILD_ENV, "") in ("", "0")
    if not build:
        raise ToolError(
            f"not built: CNI plugins ({directory} is incomplete). "
            "Run `hack/build-tools.sh cni` (or `make tools`) to build."
        )
    build_tools("cni")
    if not all(_is_executable(directory / p) for p in CNI_PLUGINS):
        raise ToolError(f"hack/build-tools.sh succeeded but {directory} is still incomplete")
    return directory
