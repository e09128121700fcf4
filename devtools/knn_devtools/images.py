"""Container images for the local cluster, made on this machine without a registry.

Each image is an OCI archive in the tools cache (``$KNN_CACHE_DIR/images``), keyed
by what it is made from, so it is made once per machine and imported into
containerd at every cluster start:

* the pod sandbox (pause): a static C binary (hack/images/pause.c);
* CoreDNS: the static binary hack/build-tools.sh built;
* a stand-in for ``python:3.11-slim-bookworm`` made by mmdebstrap from Debian
  bookworm (the product's Dockerfiles start ``FROM`` it; BuildKit resolves it
  from containerd's store, see :mod:`knn_devtools.buildkit`).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from knn_devtools import ociimage
from knn_devtools.tools import REPO_ROOT, cache_dir, pinned_version

PAUSE_SOURCE: Final = REPO_ROOT / "hack" / "images" / "pause.c"


class ImageError(RuntimeError):
    """An image could not be made (the message says which and why)."""


def _short_hash(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:12]


PAUSE_TAG: Final = _short_hash(PAUSE_SOURCE.read_bytes()) if PAUSE_SOURCE.exists() else "missing"
PAUSE_IMAGE: Final = f"localhost/knn-local/pause:{PAUSE_TAG}"

# The stand-in base image: its name is the one the Dockerfiles use.
PYTHON_BASE_IMAGE: Final = "docker.io/library/python:3.11-slim-bookworm"
_DEBIAN_SUITE: Final = "bookworm"
_BASE_PACKAGES: Final = (
    "ca-certificates",
    "netbase",
    "tzdata",
    "python3.11",
    "python3.11-venv",
    "python3",
    "python-is-python3",
    # The official image has Python.h (CPython built from source); hnswlib builds from
    # its sdist in Dockerfile.serving and needs it.
    "libpython3.11-dev",
)
_MIRRORS: Final = (
    f"deb http://deb.debian.org/debian {_DEBIAN_SUITE} main",
    f"deb http://deb.debian.org/debian {_DEBIAN_SUITE}-updates main",
    f"deb http://deb.debian.org/debian-security {_DEBIAN_SUITE}-security main",
)
# As the official Debian images: apt leaves no package cache behind.
_DOCKER_CLEAN: Final = (
    'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
    '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
    'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
    '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
    'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n'
)
_BASE_RECIPE_VERSION: Final = "1"


def images_dir() -> Path:
    d = cache_dir() / "images"
    d.mkdir(parents=True, exist_ok=True)
    return d


def pause_image() -> Path:
    """The pause image archive (``PAUSE_IMAGE``), made if missing."""
    out = images_dir() / f"pause-{PAUSE_TAG}.oci.tar"
    if out.exists():
        return out
    if shutil.which("gcc") is None:
        raise ImageError(
            "the pause image needs gcc with static libc (apt-get install gcc libc6-dev)"
        )

    def fill(rootfs: Path) -> None:
        binary = rootfs / "pause"
        _run(["gcc", "-Os", "-static", "-o", str(binary), str(PAUSE_SOURCE)], "gcc pause.c")
        _run(["strip", str(binary)], "strip pause")

    _image_from_directory(
        out, PAUSE_IMAGE, ociimage.ImageConfig(entrypoint=("/pause",), env=()), fill
    )
    return out


def coredns_image(binary: Path) -> tuple[Path, str]:
    """(archive, image name) of CoreDNS from its static binary, made if missing."""
    version = pinned_version("coredns")
    name = f"localhost/knn-local/coredns:v{version}"
    out = images_dir() / f"coredns-v{version}.oci.tar"
    if out.exists():
        return out, name

    def fill(rootfs: Path) -> None:
        (rootfs / "etc").mkdir()
        shutil.copy2(binary, rootfs / "coredns")
        (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/:/coredns\n")

    _image_from_directory(out, name, ociimage.ImageConfig(entrypoint=("/coredns",)), fill)
    return out, name


def _image_from_directory(
    out: Path, name: str, config: ociimage.ImageConfig, fill: Callable[[Path], None]
) -> None:
    """Writes the one-layer image ``name`` to ``out``: the layer is an empty directory
    that ``fill(rootfs)`` populates (a static binary and the files it needs)."""
    with tempfile.TemporaryDirectory(prefix="knn-image-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        rootfs.mkdir()
        fill(rootfs)
        layer = Path(tmp) / "layer.tar"
        ociimage.layer_from_directory(rootfs, layer)
        ociimage.write_archive(layer, name, out, config)


def python_base_image(*, echo: bool = True) -> Path:
    """The stand-in ``python:3.11-slim-bookworm`` archive, made with mmdebstrap if missing.

    The host's CA bundle replaces Debian's in the image: pip inside a Dockerfile
    RUN step verifies PyPI with it, and this machine may reach PyPI through a
    TLS-inspecting proxy whose CA only the host trusts.
    """
    ca_bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    key = _short_hash(
        _BASE_RECIPE_VERSION.encode(),
        " ".join(_BASE_PACKAGES).encode(),
        ca_bundle.read_bytes() if ca_bundle.exists() else b"",
    )
    out = images_dir() / f"python-3.11-slim-bookworm-{key}.oci.tar"
    if out.exists():
        return out
    if shutil.which("mmdebstrap") is None:
        raise ImageError(
            "the Python base image needs mmdebstrap (hack/install-system-deps.sh installs it)"
        )
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="knn-base-image-") as tmp:
        rootfs_tar = Path(tmp) / "rootfs.tar"
        clean = Path(tmp) / "docker-clean"
        clean.write_text(_DOCKER_CLEAN)
        argv = [
            "mmdebstrap",
            "--variant=apt",
            "--mode=root",
            "--quiet",
            "--include=" + ",".join(_BASE_PACKAGES),
            f"--customize-hook=upload {clean} /etc/apt/apt.conf.d/docker-clean",
            '--customize-hook=rm -rf "$1/var/lib/apt/lists"/* "$1/var/cache/apt"/*.bin',
        ]
        if ca_bundle.exists():
            argv.append(f"--customize-hook=upload {ca_bundle} /etc/ssl/certs/ca-certificates.crt")
        argv += [_DEBIAN_SUITE, str(rootfs_tar), *_MIRRORS]
        _run(argv, "mmdebstrap")
        layer = Path(tmp) / "layer.tar"
        ociimage.layer_from_rootfs_tar(rootfs_tar, layer)
        rootfs_tar.unlink()
        ociimage.write_archive(
            layer,
            PYTHON_BASE_IMAGE,
            out,
            ociimage.ImageConfig(
                cmd=("python3",),
                env=(
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "LANG=C.UTF-8",
                    "PYTHON_VERSION=3.11",
                ),
            ),
        )
    if echo:
        print(f"made {out.name} in {time.monotonic() - began:.0f}s", flush=True)
    return out


def _run(argv: list[str], what: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ImageError(
            f"{what} failed with exit status {result.returncode}:\n"
            + (result.stderr or result.stdout)[-4000:]
        )
