"""A version names the inputs that change the artifact, and nothing else.

Replicas, resources, efSearch (a serving-time parameter) and rollout settings
change serving in place; the source, its format and ids, the metric, the HNSW
build parameters and a rebuild token change the artifact and make a new version.
"""

from __future__ import annotations

import hashlib
import json

from .models.knnindex import KnnIndexSpec

VERSION_LENGTH = 8


def version_inputs(spec: KnnIndexSpec, rebuild_annotation: str | None = None) -> dict[str, object]:
    s = spec.source
    return {
        "source": [s.uri, s.format, s.dimension, s.ids, s.column, s.id_column],
        "metric": spec.metric,
        "hnsw": [spec.hnsw.m, spec.hnsw.ef_construction],
        "validation": spec.build.validation.model_dump(),
        "token": [spec.rebuild.token, rebuild_annotation],
    }


def version_of(spec: KnnIndexSpec, rebuild_annotation: str | None = None) -> str:
    key = json.dumps(version_inputs(spec, rebuild_annotation), sort_keys=True)
    return "v" + hashlib.sha256(key.encode()).hexdigest()[:VERSION_LENGTH]
