"""The artifact contract: one directory per built version.

Layout::

    <version>/manifest.json   Manifest below; sha256 of every other file
    <version>/index.bin       hnswlib index
    <version>/ids.npy         original ids (int64 or unicode), position = hnswlib label
    <version>/probes.npz      probe queries, their exact top-k labels, and the label
                              of each query's own row (-1 if not from the data)

A builder writes it under a temporary name and renames it, so a reader never
sees half an artifact. A server refuses one whose checksums do not match.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

FORMAT_VERSION: Literal[1] = 1
MANIFEST_FILE = "manifest.json"
INDEX_FILE = "index.bin"
IDS_FILE = "ids.npy"
PROBES_FILE = "probes.npz"
TEMP_PREFIX = ".tmp-"

Metric = Literal["l2", "ip", "cosine"]


class HnswParameters(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    m: int = Field(ge=2, le=128)
    ef_construction: int = Field(ge=1, le=4096)
    ef_search: int = Field(ge=1, le=4096)


class SourceInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    uri: str
    format: str
    sha256: str
    ids_uri: str | None = None
    # Added later; manifests written before them load with None.
    ids_sha256: str | None = Field(default=None, description="sha256 of the --ids file")
    column: str | None = Field(default=None, description="parquet column of the vectors")
    id_column: str | None = Field(default=None, description="parquet column of the ids")


class Validation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    probe_queries: int = Field(ge=0)
    k: int = Field(ge=1)
    recall: float = Field(ge=0.0, le=1.0)
    min_recall: float = Field(ge=0.0, le=1.0)
    held_out: bool


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: Literal[1] = FORMAT_VERSION
    kind: Literal["hnsw", "kmeans"]
    version: str
    dimension: int = Field(ge=1)
    metric: Metric
    count: int = Field(ge=1)
    id_type: Literal["int", "str"]
    parameters: HnswParameters
    source: SourceInfo
    validation: Validation
    build_seconds: float = Field(ge=0.0)
    created: str
    files: dict[str, str] = Field(description="file name -> sha256 hex digest")


class BuildExit(IntEnum):
    """The exit status of `knn-build`, which the Job reports beside the summary.

    Each kind of failure has its own code, so a caller can tell a failed recall
    gate from bad input, storage trouble or a crash without parsing messages.
    """

    BUILT = 0
    RECALL_TOO_LOW = 1  # the recall gate failed: --min-recall not reached
    BAD_INPUT = 2  # a source, ids file or option that cannot be used (usage errors too)
    STORAGE_ERROR = 3  # --out or an existing artifact: unwritable, corrupt, or other inputs
    INTERNAL_ERROR = 4  # anything unexpected: out of memory, a library failure, a bug


class BuildSummary(BaseModel):
    """One JSON line the builder writes to its termination message.

    Kept well under the kubelet's 4096-byte termination message limit.
    """

    model_config = ConfigDict(extra="forbid")

    outcome: Literal["Succeeded", "Failed"]
    version: str | None = None
    vectors: int | None = None
    dimension: int | None = None
    recall: float | None = None
    build_seconds: float | None = None
    artifact: str | None = None
    sha256: str | None = Field(default=None, description="sha256 of manifest.json")
    message: str = ""
