"""One build identity for the operator and the builder.

A version names the inputs that change the artifact and nothing else: the
source and how it is read, the metric, the graph parameters (M, efConstruction)
and the validation that gates it. efSearch is a serving parameter: it belongs to
the revision, not to the artifact, so it is not part of the identity (a failed
recall gate is fixed by raising efSearch without a rebuild; the artifact records
the recall it gets at every efSearch in its curve).

The operator cannot read the source, so it leaves the digests empty and names a
rebuild token instead; the builder, run by hand without --version, names the
source by its content. Both call `version_of` on the same model.
"""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, ConfigDict

VERSION_LENGTH = 8


class BuildInputs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source_uri: str
    source_format: str | None = None
    dimension: int | None = None
    ids: str | None = None
    column: str | None = None
    id_column: str | None = None
    metric: str
    m: int
    ef_construction: int
    probe_queries: int
    probe_source: str | None = None
    k: int
    min_recall: float
    # Which rows are held out as probes (the builder's --seed; the operator's Jobs
    # use the builder's default and leave it unset).
    seed: int | None = None
    # Content digests, known to the builder only.
    source_sha256: str | None = None
    ids_sha256: str | None = None
    probe_source_sha256: str | None = None
    # Rebuild tokens (spec.rebuild.token, the knn.dev/rebuild annotation).
    tokens: tuple[str | None, ...] = ()


class KMeansBuildInputs(BaseModel):
    """A k-means version's identity. The gate's thresholds (--min-silhouette, ...)
    and --previous are not in it: a model is the same model whatever it is judged
    against, so after a failed gate the same inputs build the same version."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = "kmeans"
    source_uri: str
    source_format: str | None = None
    dimension: int | None = None
    column: str | None = None
    clusters_min: int
    clusters_max: int
    n_init: int
    max_iter: int
    seed: int
    algorithm: str
    batch_size: int | None = None
    probe_points: int
    probe_source: str | None = None
    silhouette_sample: int
    source_sha256: str | None = None
    probe_source_sha256: str | None = None
    tokens: tuple[str | None, ...] = ()


def version_of(inputs: BuildInputs | KMeansBuildInputs) -> str:
    """'v' + the first VERSION_LENGTH hex digits of the inputs' sha256."""
    key = inputs.model_dump_json()
    return "v" + hashlib.sha256(key.encode()).hexdigest()[:VERSION_LENGTH]


# A revision is what serves: one version's artifact with one serving
# configuration. Its id is the version, a dash and this many hex digits of the
# serving inputs' digest, so `<index>-<revision>` still fits a Service name
# (63) with the longest index name the CRD allows (47).
REVISION_SUFFIX_LENGTH = 5


class ServingInputs(BaseModel):
    """Everything that can change a server's answers or latency. Replicas are not
    here: scaling is done in place, never by a rollout."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str
    ef_search: int | None  # an index's; a k-means model has no serving-time parameter
    image: str
    workers: int
    resources: str = ""  # canonical JSON of requests and limits
    probe_interval_seconds: int | None = None
    # Canonical JSON of the pod overrides; empty keeps the ids of revisions made
    # before overrides existed.
    pod: str = ""


def revision_of(inputs: ServingInputs) -> str:
    # Inputs added later are left out while empty, so existing revisions keep their ids.
    key = inputs.model_dump_json(exclude={"pod"} if not inputs.pod else None)
    digest = hashlib.sha256(key.encode()).hexdigest()[:REVISION_SUFFIX_LENGTH]
    return f"{inputs.version}-{digest}"


def version_of_revision(revision: str) -> str:
    """The artifact version a revision serves (a revision id starts with it)."""
    return revision.rsplit("-", 1)[0] if "-" in revision else revision
