"""The OpenAPI → kubeconform schema conversion (knn_devtools.kubeschemas), pure."""

from __future__ import annotations

from typing import Any

from knn_devtools.kubeschemas import schema_path, standalone_schemas, strict

GVK = "x-kubernetes-group-version-kind"


def test_objects_reject_undeclared_properties_unless_they_preserve_unknown_fields() -> None:
    schema = {
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {"a": {"type": "string"}}},
            "blob": {
                "type": "object",
                "properties": {"b": {"type": "string"}},
                "x-kubernetes-preserve-unknown-fields": True,
            },
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    out = strict(schema)
    assert out["additionalProperties"] is False
    assert out["properties"]["spec"]["additionalProperties"] is False
    assert "additionalProperties" not in out["properties"]["blob"]
    assert out["properties"]["labels"]["additionalProperties"] == {"type": "string"}


def test_property_names_that_are_schema_keywords_stay_properties() -> None:
    """The CRD kind's own schema has properties named format, properties and
    x-kubernetes-int-or-string; they are fields, not keywords of this schema."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "format": {"type": "string"},
            "properties": {"type": "object", "additionalProperties": {"type": "string"}},
            "x-kubernetes-int-or-string": {"type": "boolean"},
        },
    }
    out = strict(schema)
    assert out["properties"]["format"] == {"type": "string"}
    assert out["properties"]["x-kubernetes-int-or-string"] == {"type": "boolean"}
    assert out["properties"]["properties"]["additionalProperties"] == {"type": "string"}


def test_int_or_string_takes_both_and_quantities_take_numbers() -> None:
    openapi = {
        "definitions": {
            "io.k8s.apimachinery.pkg.api.resource.Quantity": {"type": "string"},
            "io.k8s.api.core.v1.Port": {
                "type": "object",
                "properties": {
                    "target": {"type": "string", "format": "int-or-string"},
                    "cpu": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.api.resource.Quantity"},
                    "crdStyle": {"x-kubernetes-int-or-string": True},
                },
                GVK: [{"group": "", "version": "v1", "kind": "Port"}],
            },
            "io.k8s.api.unused.v1.Other": {"type": "string"},
        },
    }
    schemas = standalone_schemas(openapi)
    port = schemas["v1/v1/port.json"]
    types = [{"type": "string"}, {"type": "integer"}]
    assert port["properties"]["target"] == {"oneOf": types}
    assert port["properties"]["crdStyle"] == {"oneOf": types}
    quantity = port["definitions"]["io.k8s.apimachinery.pkg.api.resource.Quantity"]
    assert quantity == {"oneOf": [{"type": "string"}, {"type": "number"}]}
    # Only what the kind reaches travels with it.
    assert "io.k8s.api.unused.v1.Other" not in port["definitions"]


def test_schema_paths_follow_kubeconforms_template() -> None:
    assert schema_path("", "v1", "ConfigMap") == "v1/v1/configmap.json"
    assert schema_path("apps", "v1", "Deployment") == "apps/v1/deployment.json"
    assert schema_path("knn.dev", "v1alpha1", "KnnIndex") == "knn.dev/v1alpha1/knnindex.json"
