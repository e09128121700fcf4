"""Settings → a verified, loaded artifact, or the message that refuses it.

Run in the server's own process (one worker), or once in the supervisor before it
forks its workers (`--workers N`), which then share the index's memory instead of
each loading a copy (cli.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from .. import artifact
from ..artifact import localize
from ..errors import ArtifactError
from .index import LoadedIndex
from .metrics import Identity
from .model import LoadedModel

log = logging.getLogger("knn-serve")


@dataclass(frozen=True)
class Loaded:
    directory: Path  # the local copy of the version
    artifact: LoadedIndex | LoadedModel


def kind_mismatch(identity: Identity, directory: Path) -> str | None:
    """Why this server cannot serve the artifact's kind, naming the flag that would."""
    manifest = artifact.read_any_manifest(directory)
    wanted = "kmeans" if identity.serves_model else "hnsw"
    if manifest.kind == wanted:
        return None
    how = (
        "serve a k-means model with --model-name NAME"
        if manifest.kind == "kmeans"
        else "serve an HNSW index with --index-name NAME, not --model-name"
    )
    return f"{directory}: is {artifact.KIND_NAMES[manifest.kind]}; {how}"


def load(uri: str, cache_dir: Path, identity: Identity, ef_search: int | None) -> Loaded | str:
    """The loaded artifact, or "artifact refused: ..." (logged): a server that cannot
    serve it stays up and unready with that message."""
    try:
        directory = localize(uri, cache_dir)
        mismatch = kind_mismatch(identity, directory)
        if mismatch is not None:
            raise ArtifactError(mismatch)
        if identity.serves_model:
            return Loaded(directory, LoadedModel.load(directory))
        return Loaded(directory, LoadedIndex.load(directory, ef_search))
    except ArtifactError as e:
        message = f"artifact refused: {e}"
    except Exception as e:  # an unreadable index is a refusal too; stay up, unready
        message = f"artifact refused: {uri}: {type(e).__name__}: {e}"
    log.error("%s", message)
    return message
