"""The product's images, built from the repository's own Dockerfiles by BuildKit.

``buildkitd`` runs with its containerd worker against the local cluster's
containerd (namespace ``k8s.io``), so each result lands unpacked where the
kubelet runs it, no registry involved. ``FROM python:3.11-slim-bookworm``
resolves to the stand-in that :func:`knn_devtools.images.python_base_image`
made and the cluster imported under that name (``image-resolve-mode=local``).
RUN steps use host networking: apt and pip reach Debian and PyPI as the host does.

Each built image is exported to the tools cache, keyed by a hash of its build
context, so a later cluster imports it in seconds instead of building again.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from knn_devtools.images import PYTHON_BASE_IMAGE, images_dir
from knn_devtools.procs import ManagedProcess
from knn_devtools.tools import REPO_ROOT, ensure_tools

if TYPE_CHECKING:
    from knn_devtools.cluster import Cluster

# What the Dockerfiles COPY; a change to any of these makes new images.
_CONTEXT_PATHS: Final = (
    "pyproject.toml",
    "constraints.txt",
    "README.md",
    ".dockerignore",
    "contracts",
    "serving",
    "operator",
    "devtools",
)
# hnswlib compiles with -march=native unless this is set: an image built on one
# CPU could die of SIGILL on another. Dockerfile.serving declares it as an ARG.
PORTABLE_BUILD_ARGS: Final = ("HNSWLIB_NO_NATIVE=1",)
# Only here, not in `make e2e-kind`: the base image is the stand-in made from Debian's
# packages (knn_devtools.images), which answers to the floating tag, not to the
# Dockerfiles' pinned default.
LOCAL_BUILD_ARGS: Final = (f"BASE_IMAGE={PYTHON_BASE_IMAGE}",)


@dataclass(frozen=True)
class ProductImage:
    """One of the repository's Dockerfiles and the name its image gets here."""

    dockerfile: str  # e.g. "Dockerfile.serving"
    repository: str  # e.g. "localhost/knn/serving"

    def tag(self, root: Path = REPO_ROOT) -> str:
        return context_hash(root, self.dockerfile)

    def name(self, root: Path = REPO_ROOT) -> str:
        return f"{self.repository}:{self.tag(root)}"


SERVING: Final = ProductImage("Dockerfile.serving", "localhost/knn/serving")
OPERATOR: Final = ProductImage("Dockerfile.operator", "localhost/knn/operator")


def context_hash(root: Path, dockerfile: str) -> str:
    """A short hash of the Dockerfile, the build args and every context file it copies."""
    h = hashlib.sha256()
    h.update((root / dockerfile).read_bytes())
    h.update("\0".join(PORTABLE_BUILD_ARGS + LOCAL_BUILD_ARGS).encode())
    for top in _CONTEXT_PATHS:
        base = root / top
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        for path in files:
            rel = path.relative_to(root)
            if any(part in ("__pycache__", ".mypy_cache") for part in rel.parts):
                continue
            if path.suffix == ".pyc" or path.name.endswith(".egg-info"):
                continue
            if any(part.endswith(".egg-info") for part in rel.parts):
                continue
            h.update(str(rel).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def archive_path(image: ProductImage, tag: str) -> Path:
    return images_dir() / f"{image.repository.rsplit('/', 1)[-1]}-{tag}.oci.tar"


class ProductImages:
    """A cluster component: makes the product's images available in containerd."""

    name = "images"

    def __init__(self, images: tuple[ProductImage, ...] = (SERVING, OPERATOR)) -> None:
        self.images = images
        self.names: dict[str, str] = {}
        self.build_seconds: dict[str, float] = {}

    def start(self, cluster: Cluster) -> None:
        from knn_devtools.images import python_base_image

        # The base image also runs plain Python pods (tests, the demo's file server).
        cluster.import_image(python_base_image())
        missing = []
        for image in self.images:
            # Hashed once: the context may change while a build runs.
            self.names[image.dockerfile] = image.name()
            cluster.image_names[image.repository] = self.names[image.dockerfile]
            archive = archive_path(image, self.names[image.dockerfile].rsplit(":", 1)[1])
            if archive.exists():
                cluster.import_image(archive)
            else:
                missing.append(image)
        if missing:
            self._build(cluster, missing)

    def stop(self, cluster: Cluster) -> None:
        cluster.stop_process("buildkitd")

    def _build(self, cluster: Cluster, images: list[ProductImage]) -> None:
        binaries = ensure_tools("buildkitd", "buildctl")
        cfg = cluster.config
        root = cfg.run_dir / "buildkit"
        root.mkdir(parents=True, exist_ok=True)
        address = f"unix://{root / 'buildkitd.sock'}"
        proc = cluster.spawn(
            "buildkitd",
            [
                str(binaries["buildkitd"]),
                f"--root={root / 'root'}",
                f"--addr={address}",
                "--oci-worker=false",
                "--containerd-worker=true",
                f"--containerd-worker-addr={cfg.containerd_socket}",
                "--containerd-worker-namespace=k8s.io",
                "--containerd-worker-net=host",
                "--containerd-worker-gc=false",
            ],
            env=cluster.node_path_env(),
        )
        cluster.wait_until("buildkitd", lambda: (root / "buildkitd.sock").exists(), proc=proc)
        for image in images:
            began = time.monotonic()
            name = self.names[image.dockerfile]
            log = cfg.log_dir / f"buildctl-{image.dockerfile}.log"
            argv = [
                str(binaries["buildctl"]),
                f"--addr={address}",
                "build",
                "--frontend=dockerfile.v0",
                f"--local=context={REPO_ROOT}",
                f"--local=dockerfile={REPO_ROOT}",
                f"--opt=filename={image.dockerfile}",
                "--opt=image-resolve-mode=local",
                *(f"--opt=build-arg:{arg}" for arg in PORTABLE_BUILD_ARGS + LOCAL_BUILD_ARGS),
                f"--output=type=image,name={name},unpack=true",
                "--progress=plain",
            ]
            cluster.say(f"building {name} from {image.dockerfile} (log: {log})")
            build = ManagedProcess(f"buildctl-{image.dockerfile}", argv, log)
            build.start()
            code = build.wait(timeout=1800)
            if code != 0:
                from knn_devtools.cluster import ClusterError

                raise ClusterError(
                    f"buildctl {image.dockerfile} failed with exit status {code}; "
                    f"last lines of {log}:\n{build.stderr_tail(30)}"
                )
            build.stop()
            self.build_seconds[image.dockerfile] = time.monotonic() - began
            archive = archive_path(image, name.rsplit(":", 1)[1])
            tmp = archive.with_name(f".{archive.name}.tmp")
            cluster.ctr("images", "export", str(tmp), name)
            tmp.replace(archive)
            # One archive per image: older contexts' builds are only disk use now.
            stem = image.repository.rsplit("/", 1)[-1]
            for old in archive.parent.glob(f"{stem}-*.oci.tar"):
                if old != archive:
                    old.unlink(missing_ok=True)
            cluster.say(
                f"built {name} in {self.build_seconds[image.dockerfile]:.0f}s; cached as {archive}"
            )
        cluster.stop_process("buildkitd")
