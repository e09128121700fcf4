"""Write and verify artifacts (DESIGN section 3).

Writing: files go into a temporary sibling directory, the manifest (with the
sha256 of every file) is written last, then the directory is renamed into
place. On a remote store (no atomic rename) the files are uploaded first and
the manifest last, so a manifest's presence means the artifact is whole.
A build killed while writing leaves its temporary directory; the next build of
the same version removes it (remove_stale_staging).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from knn_contracts.artifact import (
    IDS_FILE,
    INDEX_FILE,
    MANIFEST_FILE,
    PROBES_FILE,
    TEMP_PREFIX,
    Manifest,
)
from knn_contracts.kmeans import KMEANS_FILES, KMeansManifest
from pydantic import ValidationError

from .errors import ArtifactError
from .uris import join, resolve

_CHUNK = 4 << 20
# tempfile.mkdtemp's random part: 8 characters of this alphabet. A unit test checks
# staging_dir against it, so a Python that names them otherwise fails loudly.
_STAGING_SUFFIX = "[a-z0-9_]{8}"

log = logging.getLogger("knn-build")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def staging_dir(parent: Path, version: str) -> Iterator[Path]:
    """A temporary directory beside the final one, removed unless published."""
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{version}-", dir=parent))
    # mkdtemp makes it 0700; serving pods run as another non-root user.
    tmp.chmod(0o755)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def staging_name_pattern(version: str) -> re.Pattern[str]:
    """What staging_dir names a directory for `version`, and nothing else.

    The suffix has a fixed length without '-' or '.', so version "a" never
    matches the staging directories of version "a-b" or "a.1".
    """
    return re.compile(re.escape(f"{TEMP_PREFIX}{version}-") + _STAGING_SUFFIX)


def remove_stale_staging(parent: Path, version: str) -> list[Path]:
    """Remove the staging directories that a killed build of `version` left in `parent`.

    Only this version's: another version's may belong to a Job running now. Symbolic
    links are never followed or removed, and an entry that cannot be removed is
    logged and left, since it only costs space. Returns what was removed.
    """
    pattern = staging_name_pattern(version)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(parent))
    except (FileNotFoundError, NotADirectoryError):
        return removed  # nothing built here yet, or an --out the build will report
    except OSError as e:
        log.warning("cannot look for stale staging directories in %s: %s", parent, e)
        return removed
    for entry in entries:
        if not pattern.fullmatch(entry.name) or not entry.is_dir(follow_symlinks=False):
            continue
        path = Path(entry.path)
        try:
            shutil.rmtree(path)
        except OSError as e:
            log.warning("cannot remove stale staging directory %s: %s", path, e)
            continue
        log.info("removed stale staging directory %s (left by an interrupted build)", path)
        removed.append(path)
    return removed


def file_digests(directory: Path) -> dict[str, str]:
    return {
        p.name: sha256_file(p)
        for p in sorted(directory.iterdir())
        if p.is_file() and p.name != MANIFEST_FILE
    }


def write_manifest(directory: Path, manifest: Manifest | KMeansManifest) -> str:
    path = directory / MANIFEST_FILE
    data = manifest.model_dump_json(indent=2).encode() + b"\n"
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return hashlib.sha256(data).hexdigest()


def publish_local(staged: Path, final: Path) -> None:
    """Rename a fully written staging directory into place."""
    for p in staged.iterdir():
        with p.open("rb") as f:
            os.fsync(f.fileno())
    if final.exists():
        raise ArtifactError(f"{final}: already exists; artifacts are immutable")
    staged.rename(final)
    _fsync_dir(final.parent)


def publish_remote(staged: Path, uri: str) -> None:
    import fsspec  # only remote stores need it at import time

    fs, _, (root,) = fsspec.get_fs_token_paths(uri)
    if fs.exists(join(root, MANIFEST_FILE)):
        raise ArtifactError(f"{uri}: already exists; artifacts are immutable")
    for p in sorted(staged.iterdir()):
        if p.name != MANIFEST_FILE:
            fs.put_file(str(p), join(root, p.name))
    fs.put_file(str(staged / MANIFEST_FILE), join(root, MANIFEST_FILE))


@dataclass(frozen=True)
class Probes:
    queries: npt.NDArray[np.float32]
    truth: npt.NDArray[np.int64]  # (n, k) hnswlib labels of the exact top-k
    self_labels: npt.NDArray[np.int64]  # label of the query's own row, -1 if none

    def save(self, path: Path) -> None:
        with path.open("wb") as f:
            np.savez(f, queries=self.queries, truth=self.truth, self_labels=self.self_labels)

    @classmethod
    def load(cls, path: Path) -> Probes:
        with np.load(path, allow_pickle=False) as z:
            return cls(
                queries=np.ascontiguousarray(z["queries"], dtype=np.float32),
                truth=np.asarray(z["truth"], dtype=np.int64),
                self_labels=np.asarray(z["self_labels"], dtype=np.int64),
            )


ArtifactKind = Literal["hnsw", "kmeans"]
AnyManifest = Manifest | KMeansManifest
KIND_NAMES: dict[str, str] = {
    "hnsw": "an HNSW index (kind hnsw, a KnnIndex version)",
    "kmeans": "a k-means model (kind kmeans, a ClusterModel version)",
}
_REQUIRED: dict[str, tuple[str, ...]] = {
    "hnsw": (INDEX_FILE, IDS_FILE, PROBES_FILE),
    "kmeans": KMEANS_FILES,
}


def parse_manifest(raw: bytes, where: str) -> AnyManifest:
    """The manifest of either kind, by its `kind` field (ArtifactError naming the problem)."""
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise ArtifactError(f"{where}: invalid manifest: not JSON ({e})") from None
    kind = doc.get("kind") if isinstance(doc, dict) else None
    model: type[Manifest] | type[KMeansManifest]
    if kind == "kmeans":
        model = KMeansManifest
    elif kind == "hnsw":
        model = Manifest
    else:
        raise ArtifactError(f"{where}: invalid manifest: unknown kind {kind!r} (hnsw or kmeans)")
    try:
        return model.model_validate(doc)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(x) for x in first["loc"]) or "(root)"
        raise ArtifactError(f"{where}: invalid manifest at {loc}: {first['msg']}") from None


@dataclass(frozen=True)
class KMeansProbes:
    """A k-means artifact's probe points with their exact nearest centroid."""

    points: npt.NDArray[np.float32]  # (n, d)
    assignments: npt.NDArray[np.int64]  # (n,) cluster ids
    distances: npt.NDArray[np.float64]  # (n,) Euclidean distance to that centroid

    def save(self, path: Path) -> None:
        with path.open("wb") as f:
            np.savez(f, points=self.points, assignments=self.assignments, distances=self.distances)

    @classmethod
    def load(cls, path: Path) -> KMeansProbes:
        with np.load(path, allow_pickle=False) as z:
            return cls(
                points=np.ascontiguousarray(z["points"], dtype=np.float32),
                assignments=np.asarray(z["assignments"], dtype=np.int64),
                distances=np.asarray(z["distances"], dtype=np.float64),
            )


def read_any_manifest(directory: Path) -> AnyManifest:
    path = directory / MANIFEST_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(
            f"{directory}: no {MANIFEST_FILE}; not an artifact or not complete"
        ) from None
    except OSError as e:
        raise ArtifactError(f"{path}: cannot read: {e.strerror}") from None
    return parse_manifest(raw, str(path))


def refuse_other_kind(directory: Path | str, manifest: AnyManifest, wanted: ArtifactKind) -> None:
    """ArtifactError if `manifest` is not of kind `wanted`: an HNSW reader given a
    k-means model (or the reverse) says so instead of failing on a missing file."""
    if manifest.kind != wanted:
        raise ArtifactError(
            f"{directory}: is {KIND_NAMES[manifest.kind]}, not {KIND_NAMES[wanted]}"
        )


def read_manifest(directory: Path) -> Manifest:
    """The manifest of an HNSW artifact; a k-means artifact is refused by name."""
    manifest = read_any_manifest(directory)
    refuse_other_kind(directory, manifest, "hnsw")
    assert isinstance(manifest, Manifest)
    return manifest


def verify_any(directory: Path) -> AnyManifest:
    """Check every file against the manifest; raise ArtifactError naming the first mismatch."""
    manifest = read_any_manifest(directory)
    for required in _REQUIRED[manifest.kind]:
        if required not in manifest.files:
            raise ArtifactError(f"{directory}: manifest lists no checksum for {required}")
    for name, expected in sorted(manifest.files.items()):
        path = directory / name
        if not path.is_file():
            raise ArtifactError(f"{path}: listed in the manifest but missing")
        actual = sha256_file(path)
        if actual != expected:
            raise ArtifactError(
                f"{path}: sha256 mismatch (manifest {expected[:12]}…, file {actual[:12]}…); "
                "the artifact is corrupt"
            )
    return manifest


def verify(directory: Path) -> Manifest:
    """verify_any for an HNSW artifact: a k-means one is refused by name."""
    manifest = verify_any(directory)
    refuse_other_kind(directory, manifest, "hnsw")
    assert isinstance(manifest, Manifest)
    return manifest


def verify_kmeans(directory: Path) -> KMeansManifest:
    """verify_any for a k-means artifact: an HNSW one is refused by name."""
    manifest = verify_any(directory)
    refuse_other_kind(directory, manifest, "kmeans")
    assert isinstance(manifest, KMeansManifest)
    return manifest


def localize(uri: str, cache: Path) -> Path:
    """A local directory holding the artifact at `uri`, downloading remote ones into `cache`."""
    loc = resolve(uri)
    if loc.local is not None:
        return loc.local
    import fsspec

    fs, _, (root,) = fsspec.get_fs_token_paths(uri)
    if not fs.exists(join(root, MANIFEST_FILE)):
        raise ArtifactError(f"{uri}: no {MANIFEST_FILE}; not an artifact or not complete")
    target = cache / hashlib.sha256(uri.encode()).hexdigest()[:16]
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name in [MANIFEST_FILE, *read_remote_manifest(fs, root).files]:
        fs.get_file(join(root, name), str(target / name))
    return target


def read_remote_manifest(fs: object, root: str) -> AnyManifest:
    with fs.open(join(root, MANIFEST_FILE), "rb") as f:  # type: ignore[attr-defined]
        return parse_manifest(f.read(), join(root, MANIFEST_FILE))
