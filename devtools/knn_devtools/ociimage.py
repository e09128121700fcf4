"""Single-layer OCI image archives made from a directory or a root-filesystem tarball.

The result is an OCI image layout in a tar file (``oci-layout``, ``index.json``,
``blobs/sha256/...``) that ``ctr images import`` loads into containerd under the
name given here: images for the local cluster without a registry or Docker.
Layers are written deterministically (sorted, owner root, mtime 0), so the same
input gives the same digest.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class ImageConfig:
    """The runtime part of an OCI image config."""

    entrypoint: Sequence[str] = ()
    cmd: Sequence[str] = ()
    env: Sequence[str] = (_DEFAULT_PATH,)
    workdir: str = ""
    user: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"Env": list(self.env)}
        if self.entrypoint:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd:
            out["Cmd"] = list(self.cmd)
        if self.workdir:
            out["WorkingDir"] = self.workdir
        if self.user:
            out["User"] = self.user
        if self.labels:
            out["Labels"] = dict(self.labels)
        return out


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _file_digest(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest(), path.stat().st_size


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 0
    return info


def layer_from_directory(rootfs: Path, out: Path) -> None:
    """Writes an uncompressed layer tar of everything under ``rootfs``."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tf:
        for dirpath, dirnames, filenames in os.walk(rootfs):
            dirnames.sort()
            base = Path(dirpath)
            rel = base.relative_to(rootfs)
            if rel != Path():
                tf.add(base, arcname=str(rel), recursive=False, filter=_normalise)
            # Symlinks to directories are listed in dirnames and not walked: add them here.
            links = [d for d in dirnames if (base / d).is_symlink()]
            for name in sorted(filenames + links):
                tf.add(base / name, arcname=str(rel / name), recursive=False, filter=_normalise)


def layer_from_rootfs_tar(source: Path, out: Path) -> None:
    """Re-writes a root filesystem tarball (e.g. from mmdebstrap) as a layer: names
    without ``./``, no device nodes under /dev (the runtime provides /dev)."""
    with tarfile.open(source) as tin, tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tout:
        for member in tin:
            name = member.name[2:] if member.name.startswith("./") else member.name
            name = name.lstrip("/")
            if not name or (name.startswith("dev/") and name != "dev/"):
                continue
            member.name = name
            tout.addfile(member, tin.extractfile(member) if member.isreg() else None)


def write_archive(layer: Path, name: str, out: Path, config: ImageConfig) -> str:
    """Wraps one layer tar as an OCI archive for image ``name``; returns the manifest
    digest. ``out`` is written under a temporary name and renamed."""
    layer_digest, layer_size = _file_digest(layer)
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": config.to_json(),
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "knn_devtools.ociimage"}],
    }
    config_b = json.dumps(image_config, separators=(",", ":"), sort_keys=True).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": _digest(config_b),
            "size": len(config_b),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": layer_digest,
                "size": layer_size,
            }
        ],
    }
    manifest_b = json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()
    last = name.rsplit("/", 1)[-1]
    tag = last.rsplit(":", 1)[1] if ":" in last else "latest"
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": _digest(manifest_b),
                "size": len(manifest_b),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": tag,
                },
            }
        ],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with tarfile.open(tmp, "w") as tf:
            for d in ("blobs", "blobs/sha256"):
                info = tarfile.TarInfo(d)
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tf.addfile(info)
            small = {
                "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
                "index.json": json.dumps(index).encode(),
                "blobs/sha256/" + _digest(config_b)[7:]: config_b,
                "blobs/sha256/" + _digest(manifest_b)[7:]: manifest_b,
            }
            for member, data in small.items():
                info = tarfile.TarInfo(member)
                info.size = len(data)
                info.mode = 0o644
                tf.addfile(info, io.BytesIO(data))
            tf.add(layer, arcname="blobs/sha256/" + layer_digest[7:], filter=_normalise)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return _digest(manifest_b)
