"""The artifact contract: one directory per built version.

Layout::

    <version>/manifest.json   Manifest below; sha256 of every other file
    <version>/index.bin       hnswlib index
    <version>/ids.npy         original ids (int64 or unicode), position = hnswlib label
    <version>/probes.npz      probe queries, their exact top-k labels, and the label
                              of each query's own row (-1 if not from the data)

A builder writes it under a temporary name and renames it, so a reader never
sees half an artifact. A server refuses one whose checksums do not match.

Format 2 (held-out probes). Probes taken from the data are rows kept *out of the
graph*: index.bin holds `count - validation.held_out_rows` vectors, and the
probe rows (probes.npz `queries` with `self_labels` >= 0) are served from an exact
side list merged into every answer, so no vector is lost and a replayed probe is
searched exactly as a new query is (a row in the graph was linked to its own
neighbours at insertion: leave-one-out probes report 0.98 where new queries get
0.72). `validation.curve` holds the recall (and one-thread latency) at a ladder of
efSearch values. A format-1 reader refuses a format-2 manifest (unknown fields),
which is what it must do: it would serve without the side list and lose those
rows. A format-2 reader serves format 1 (every row in the graph, leave-one-out
probes) but does not export its biased probe recall.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

FORMAT_VERSION: Literal[2] = 2
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


class CurvePoint(BaseModel):
    """Recall@k of the probe set at one efSearch, and its mean one-thread search time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ef_search: int = Field(ge=1)
    recall: float = Field(ge=0.0, le=1.0)
    latency_us: float = Field(ge=0.0)


def recall_at(curve: Sequence[CurvePoint], ef_search: int) -> float | None:
    """The recorded recall that `ef_search` is known to reach, or None if unknown.

    Recall does not fall as efSearch grows, so an efSearch between two measured
    ones is credited with the lower one's recall (never more than was measured);
    one below every measured value is unknown."""
    below = [p for p in curve if p.ef_search <= ef_search]
    if not below:
        return None
    return max(below, key=lambda p: p.ef_search).recall


def smallest_ef_reaching(curve: Sequence[CurvePoint], min_recall: float) -> int | None:
    """The smallest measured efSearch whose recall reaches `min_recall`."""
    passing = [p.ef_search for p in curve if p.recall >= min_recall]
    return min(passing) if passing else None


ProbeMethod = Literal["held-out", "probe-source", "leave-one-out"]


class Validation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    probe_queries: int = Field(ge=0)
    k: int = Field(ge=1)
    recall: float = Field(ge=0.0, le=1.0, description="recall@k at parameters.ef_search")
    min_recall: float = Field(ge=0.0, le=1.0)
    held_out: bool
    # Format 2. "held-out": probe rows kept out of the graph (served from the side
    # list); "probe-source": user-given queries; "leave-one-out": format 1 only.
    method: ProbeMethod = "leave-one-out"
    held_out_rows: int = Field(default=0, ge=0, description="rows served from the side list")
    probe_source: str | None = None
    probe_source_sha256: str | None = None
    seed: int | None = None
    curve: list[CurvePoint] = Field(default_factory=list)


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: Literal[1, 2] = FORMAT_VERSION
    # A k-means model has its own manifest (knn_contracts.kmeans.KMeansManifest).
    kind: Literal["hnsw"]
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
    # The validation gate failed: --min-recall not reached (hnsw), or for kmeans
    # --min-silhouette, --min-cluster-fraction or --max-inertia-regression.
    RECALL_TOO_LOW = 1
    GATE_FAILED = 1  # the same code under the name that fits both kinds
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
    ef_search: int | None = Field(default=None, description="the efSearch `recall` is at")
    # Compact recall curve: [efSearch, recall, one-thread latency in µs] per rung
    # (about 25 bytes each; the full curve is in the manifest).
    curve: list[tuple[int, float, float]] | None = None
    # "kmeans" for a k-means build; absent for an HNSW one (as before k-means existed,
    # so an operator whose contract predates the field still reads HNSW summaries).
    kind: Literal["hnsw", "kmeans"] | None = None
    # k-means (--kind kmeans): the served k, its training inertia and silhouette, and
    # a compact elbow curve [k, inertia, silhouette] (thinned to fit; the manifest
    # holds every k tried).
    clusters: int | None = None
    inertia: float | None = None
    silhouette: float | None = None
    elbow: list[tuple[int, float, float]] | None = None
    message: str = ""

    def recall_curve(self) -> list[CurvePoint]:
        return [CurvePoint(ef_search=ef, recall=r, latency_us=us) for ef, r, us in self.curve or []]
