"""The manifest model reads what older builders wrote."""

from __future__ import annotations

import json

from knn_contracts.artifact import Manifest

# A manifest as builders wrote it before ids_sha256, column and id_column were recorded.
OLDER = {
    "format_version": 1,
    "kind": "hnsw",
    "version": "v1",
    "dimension": 4,
    "metric": "l2",
    "count": 10,
    "id_type": "str",
    "parameters": {"m": 16, "ef_construction": 200, "ef_search": 64},
    "source": {"uri": "/data/x.npy", "format": "npy", "sha256": "ab" * 32, "ids_uri": "/i.txt"},
    "validation": {"probe_queries": 5, "k": 3, "recall": 1.0, "min_recall": 0.9, "held_out": True},
    "build_seconds": 0.5,
    "created": "2026-01-01T00:00:00+00:00",
    "files": {"index.bin": "cd" * 32},
}


def test_a_manifest_without_the_later_source_fields_loads() -> None:
    source = Manifest.model_validate_json(json.dumps(OLDER)).source
    assert source.ids_uri == "/i.txt"
    assert (source.ids_sha256, source.column, source.id_column) == (None, None, None)


def test_the_later_source_fields_round_trip() -> None:
    doc = json.loads(json.dumps(OLDER))
    doc["source"] |= {"ids_sha256": "ef" * 32, "column": "emb", "id_column": "key"}
    manifest = Manifest.model_validate_json(json.dumps(doc))
    assert Manifest.model_validate_json(manifest.model_dump_json()) == manifest
    assert (manifest.source.column, manifest.source.id_column) == ("emb", "key")
