"""Resolve the URIs users write (plain path, file://, pvc://, http(s)://, s3://).

`pvc://CLAIM/path` names a file on a PersistentVolumeClaim that the operator
mounts at `$KNN_PVC_ROOT/CLAIM` (default /mnt/pvc), so inside a pod it is a
local path. Remote schemes go through fsspec, never hand-written clients.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .errors import InputError

REMOTE_SCHEMES = frozenset({"http", "https", "s3"})
PVC_ROOT_ENV = "KNN_PVC_ROOT"
DEFAULT_PVC_ROOT = "/mnt/pvc"


@dataclass(frozen=True)
class Location:
    """Either a local path or a remote URL that fsspec can open."""

    uri: str
    local: Path | None

    @property
    def is_local(self) -> bool:
        return self.local is not None

    @property
    def name(self) -> str:
        return (
            self.local.name if self.local is not None else urlsplit(self.uri).path.rsplit("/")[-1]
        )


def resolve(uri: str) -> Location:
    if not uri:
        raise InputError("empty URI")
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "" or (len(scheme) == 1 and uri[1:3] in (":\\", ":/")):
        return Location(uri, Path(uri))
    if scheme == "file":
        return Location(uri, Path(unquote(parts.path)))
    if scheme == "pvc":
        if not parts.netloc:
            raise InputError(f"{uri}: pvc:// URIs need a claim name, as pvc://CLAIM/path")
        root = Path(os.environ.get(PVC_ROOT_ENV, DEFAULT_PVC_ROOT))
        return Location(uri, root / parts.netloc / unquote(parts.path).lstrip("/"))
    if scheme in REMOTE_SCHEMES:
        return Location(uri, None)
    raise InputError(
        f"{uri}: unsupported URI scheme '{scheme}' (use a path, file://, pvc://, http(s):// or s3://)"
    )


def join(uri: str, name: str) -> str:
    return uri.rstrip("/") + "/" + name
