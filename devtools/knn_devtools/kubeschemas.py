"""JSON schemas for kubeconform, made offline from a running API server's OpenAPI.

kubeconform validates manifests against one JSON schema file per kind, which it
normally downloads. Here they come from the API server the tests already run
(``/openapi/v2``), which publishes Kubernetes' own kinds and every installed CRD
(ours, prometheus-operator's), so nothing is downloaded and the schemas are exactly
those of the pinned Kubernetes. :func:`standalone_schemas` is pure; the layout
matches :data:`SCHEMA_LOCATION`.

The conversion does what kubeconform's own openapi2jsonschema script does for its
``-strict`` schemas: objects reject properties they do not declare (unless the
schema preserves unknown fields), and int-or-string fields take either. Quantities
(``cpu: 1``) take a number as well as a string, as the API server does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

# kubeconform's template: Group is the apiVersion's group (the version itself for
# the core group "v1"), ResourceAPIVersion its version, ResourceKind the lower-case kind.
SCHEMA_LOCATION: Final = "{{ .Group }}/{{ .ResourceAPIVersion }}/{{ .ResourceKind }}.json"

_REF_PREFIX: Final = "#/definitions/"
_QUANTITY: Final = "io.k8s.apimachinery.pkg.api.resource.Quantity"
_INT_OR_STRING: Final = {"oneOf": [{"type": "string"}, {"type": "integer"}]}


def schema_path(group: str, version: str, kind: str) -> str:
    """Where kubeconform looks for the schema of group/version/kind."""
    return f"{group or version}/{version}/{kind.lower()}.json"


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_REF_PREFIX):
            yield ref.removeprefix(_REF_PREFIX)
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _closure(name: str, definitions: dict[str, Any]) -> dict[str, Any]:
    """The definitions that ``name`` reaches through $ref, itself included."""
    seen: dict[str, Any] = {}
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen[current] = definitions[current]
        todo.extend(r for r in _refs(definitions[current]) if r not in seen)
    return seen


_SCHEMA_MAPS: Final = ("properties", "definitions", "patternProperties")
_SCHEMA_LISTS: Final = ("allOf", "anyOf", "oneOf")
_SCHEMA_ONE: Final = ("items", "additionalProperties", "not")


def strict(schema: Any) -> Any:
    """A copy of ``schema`` where objects reject undeclared properties and int-or-string
    fields accept both. It walks schema keywords only: a map of properties may well have
    a property called ``format`` or ``properties`` (the CRD kind's own schema does)."""
    if not isinstance(schema, dict):
        return schema
    if schema.get("format") == "int-or-string" or schema.get("x-kubernetes-int-or-string"):
        return dict(_INT_OR_STRING)
    out = dict(schema)
    for key in _SCHEMA_MAPS:
        if isinstance(out.get(key), dict):
            out[key] = {name: strict(sub) for name, sub in out[key].items()}
    for key in _SCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [strict(sub) for sub in out[key]]
    for key in _SCHEMA_ONE:
        if isinstance(out.get(key), list):
            out[key] = [strict(sub) for sub in out[key]]
        elif key in out:
            out[key] = strict(out[key])
    open_ended = schema.get("x-kubernetes-preserve-unknown-fields") is True
    if "properties" in out and "additionalProperties" not in out and not open_ended:
        out["additionalProperties"] = False
    return out


def standalone_schemas(openapi: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Schema path (:func:`schema_path`) → a self-contained strict JSON schema, for
    every kind the OpenAPI v2 document names."""
    definitions = dict(openapi.get("definitions") or {})
    if _QUANTITY in definitions:
        definitions[_QUANTITY] = {"oneOf": [{"type": "string"}, {"type": "number"}]}
    out: dict[str, dict[str, Any]] = {}
    for name, definition in definitions.items():
        for gvk in definition.get("x-kubernetes-group-version-kind") or []:
            closure = _closure(name, definitions)
            schema = strict({**definition, "definitions": closure})
            out[schema_path(gvk.get("group", ""), gvk["version"], gvk["kind"])] = schema
    return out


def write_schemas(openapi: dict[str, Any], directory: Path) -> list[Path]:
    """Writes :func:`standalone_schemas` under ``directory``; returns the files."""
    written = []
    for rel, schema in standalone_schemas(openapi).items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(schema))
        written.append(path)
    return written
