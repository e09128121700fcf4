"""The half of a build that every kind shares: find an existing version, stage the
new one's files, write its manifest last and publish it atomically.

`knn-build --kind hnsw` and `--kind kmeans` both go through here, so an artifact
of either kind is written, checksummed, reused and published the same way.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from knn_contracts.artifact import MANIFEST_FILE

from .. import artifact
from ..artifact import AnyManifest
from ..uris import join, resolve

log = logging.getLogger("knn-build")

M = TypeVar("M", bound=AnyManifest)


def source_digest(uri: str) -> str:
    """sha256 of the source bytes, read in chunks, so a version names its input."""
    loc = resolve(uri)
    if loc.local is not None:
        return artifact.sha256_file(loc.local)
    import fsspec

    digest = hashlib.sha256()
    with fsspec.open(uri, "rb") as f:
        while chunk := f.read(4 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Target:
    """Where one version goes: `<out>/<version>`."""

    out: str
    version: str

    @property
    def uri(self) -> str:
        return join(self.out, self.version)

    @property
    def local_out(self) -> Path | None:
        return resolve(self.out).local


def existing(target: Target) -> AnyManifest | None:
    """The verified manifest of the version already at `target`, if any.

    Also removes the staging directories a killed build of this version left
    (SIGKILL, OOM); remote outputs stage under the pod's temporary directory.
    """
    local = target.local_out
    if local is not None:
        artifact.remove_stale_staging(local, target.version)
        final = local / target.version
        return artifact.verify_any(final) if final.exists() else None
    import fsspec

    fs, _, (root,) = fsspec.get_fs_token_paths(target.uri)
    if not fs.exists(join(root, MANIFEST_FILE)):
        return None
    return artifact.read_remote_manifest(fs, root)


def existing_manifest_sha256(target: Target) -> str:
    """sha256 of a reused version's manifest.json ("" where it is remote)."""
    local = target.local_out
    return artifact.sha256_file(local / target.version / MANIFEST_FILE) if local else ""


def publish(
    target: Target,
    write_files: Callable[[Path], None],
    make_manifest: Callable[[dict[str, str]], M],
) -> tuple[M, str]:
    """Stage the version's files, write its manifest (with their sha256) last and
    publish it: a rename on a local store, manifest-last upload on a remote one.

    `write_files(stage)` writes every data file; `make_manifest(digests)` builds the
    manifest from their checksums. Returns the manifest and its own sha256.
    """
    local = target.local_out
    stage_parent = local if local is not None else Path(tempfile.gettempdir())
    with artifact.staging_dir(stage_parent, target.version) as stage:
        write_files(stage)
        manifest = make_manifest(artifact.file_digests(stage))
        manifest_sha = artifact.write_manifest(stage, manifest)
        if local is not None:
            artifact.publish_local(stage, local / target.version)
        else:
            artifact.publish_remote(stage, target.uri)
    return manifest, manifest_sha
