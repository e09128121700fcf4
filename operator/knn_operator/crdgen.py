"""Generate CRD schemas from the pydantic models, so the two cannot drift.

`python -m knn_operator.crdgen` writes crds/ and rbac/; a test regenerates and
compares with the checked-in files. Pydantic's JSON Schema is turned into a
Kubernetes structural schema: refs inlined, Optional unwrapped, defaults of
default factories filled in, exclusive bounds in OpenAPI v3.0 form.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml
from knn_contracts import api
from knn_contracts.identity import VERSION_LENGTH
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import to_jsonable_python

from . import crddoc, gitops, rbac
from .builders.common import Owner, job_name
from .models.clustermodel import ClusterModelSpec, ClusterModelStatus
from .models.knnindex import KnnIndexSpec, KnnIndexStatus
from .monitoring import chartfiles

_DROP = {"title", "additionalProperties_false"}


class _WithFactoryDefaults(GenerateJsonSchema):
    def default_schema(self, schema: Any) -> JsonSchemaValue:
        inner = self.generate_inner(schema["schema"])
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            value = to_jsonable_python(factory(), by_alias=True, exclude_none=True)
            return {**inner, "default": value}
        return super().default_schema(schema)


def _strip_null(options: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in options if o.get("type") != "null"]


def structural(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [structural(x, defs) for x in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return structural(merged, defs)
    if "anyOf" in node:
        options = _strip_null(node["anyOf"])
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if len(options) == 1:
            return structural({**options[0], **rest}, defs)
        node = {**rest, "anyOf": options}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("title", "$defs"):
            continue
        if key == "additionalProperties" and value is False:
            continue
        if key == "default" and value is None:
            continue
        if key == "const":
            out["enum"] = [value]
            continue
        if key == "exclusiveMinimum":
            out["minimum"], out["exclusiveMinimum"] = value, True
            continue
        if key == "exclusiveMaximum":
            out["maximum"], out["exclusiveMaximum"] = value, True
            continue
        if key == "properties":
            out[key] = {k: structural(v, defs) for k, v in value.items()}
            continue
        out[key] = structural(value, defs)
    if "properties" in out and "type" not in out:
        out["type"] = "object"
    if out.get("x-kubernetes-preserve-unknown-fields") and out.get("additionalProperties") == {}:
        # dict[str, JsonValue]: "anything" is said by preserve-unknown-fields alone; a
        # structural schema may not also carry an untyped additionalProperties.
        del out["additionalProperties"]
    return out


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, schema_generator=_WithFactoryDefaults)
    return structural(raw, raw.get("$defs", {}))  # type: ignore[no-any-return]


def _conditions_as_map(status: dict[str, Any]) -> None:
    """Conditions merge by type under server-side apply."""
    cond = status["properties"]["conditions"]
    cond["x-kubernetes-list-type"] = "map"
    cond["x-kubernetes-list-map-keys"] = ["type"]


_ROLLOUT_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Stable", "type": "string", "jsonPath": ".status.stableRevision"},
    {"name": "Canary", "type": "string", "jsonPath": ".status.canaryRevision"},
    {"name": "Weight", "type": "integer", "jsonPath": ".status.canaryWeight"},
]
_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
PRINTER_COLUMNS = [
    *_ROLLOUT_COLUMNS,
    {"name": "Recall", "type": "number", "jsonPath": ".status.recall"},
    _AGE,
]
CLUSTER_MODEL_COLUMNS = [
    *_ROLLOUT_COLUMNS,
    {"name": "K", "type": "integer", "jsonPath": ".status.clusters"},
    {"name": "Silhouette", "type": "number", "jsonPath": ".status.silhouette"},
    {"name": "Drift", "type": "number", "jsonPath": ".status.drift.value"},
    _AGE,
]


# Owned objects are named after the index (the builder Job `<name>-build-<version>`
# is the longest), and a Job's name must fit the 63-character label Kubernetes
# puts on its pods; a longer index name would never get a Job.
MAX_NAME = 63 - (len(job_name(Owner("", "", ""), "v" + "0" * VERSION_LENGTH)))


def knnindex_crd() -> dict[str, Any]:
    return _crd(
        api.KNN_INDEX_KIND,
        api.KNN_INDEX_PLURAL,
        "knn",
        schema_of(KnnIndexSpec),
        schema_of(KnnIndexStatus),
        PRINTER_COLUMNS,
        "A k-nearest-neighbour index built, validated, served and rolled out by knn-operator.",
        # Not shared with ClusterModel: `kubectl get knn NAME` would then name a
        # category of two kinds ("you must specify only one resource").
        categories=["knn"],
    )


def clustermodel_crd() -> dict[str, Any]:
    return _crd(
        api.CLUSTER_MODEL_KIND,
        api.CLUSTER_MODEL_PLURAL,
        "clm",
        schema_of(ClusterModelSpec),
        schema_of(ClusterModelStatus),
        CLUSTER_MODEL_COLUMNS,
        "A k-means model trained, validated, served (/v1/assign) and rolled out by knn-operator.",
    )


def _crd(
    kind: str,
    plural: str,
    short: str,
    spec: dict[str, Any],
    status: dict[str, Any],
    columns: list[dict[str, str]],
    description: str,
    categories: list[str] | None = None,
) -> dict[str, Any]:
    _conditions_as_map(status)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{api.GROUP}"},
        "spec": {
            "group": api.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": [short],
                **({"categories": categories} if categories else {}),
            },
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": description,
                            "required": ["spec"],
                            "x-kubernetes-validations": [
                                {
                                    "rule": f"self.metadata.name.size() <= {MAX_NAME}",
                                    "message": f"metadata.name must be no more than {MAX_NAME}"
                                    " characters: it names the builder Job"
                                    " <name>-build-<version>, which must fit in a label",
                                }
                            ],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": status,
                            },
                        }
                    },
                }
            ],
        },
    }


CRDS = {"knnindexes.yaml": knnindex_crd, "clustermodels.yaml": clustermodel_crd}
# The Role variant's namespace is a placeholder that tools replace.
RBAC = {
    "clusterrole.yaml": rbac.cluster_role,
    "role.yaml": lambda: rbac.role("NAMESPACE"),
}
HEADER = "# Generated by `python -m knn_operator.crdgen` from operator/knn_operator/{source}.\n"


def render(name: str) -> str:
    return HEADER.format(source="models") + yaml.safe_dump(CRDS[name](), sort_keys=False, width=100)


def render_rbac(name: str) -> str:
    return HEADER.format(source="rbac.py") + yaml.safe_dump(
        RBAC[name](), sort_keys=False, width=100
    )


class _NoAliases(yaml.SafeDumper):
    """Rules share verb lists; a template splices them as text, where an anchor in one
    file and its alias in another would not resolve."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _rules(rules: list[dict[str, Any]]) -> str:
    return HEADER.format(source="rbac.py") + yaml.dump(
        rules, Dumper=_NoAliases, sort_keys=False, width=100
    )


# The chart's copies of the generated files (charts/knn-operator/<name>), which its
# templates include: CRDs in crds/, the rules of its ClusterRole/Roles in files/.
CHART_RULES = {
    "files/rbac-rules.yaml": rbac.BASE_RULES,
    "files/rbac-rules-prometheus-secrets.yaml": rbac.PROMETHEUS_SECRETS_RULES,
}
CHART_FILES = [*(f"crds/{name}" for name in CRDS), *CHART_RULES, *chartfiles.FILES]


def render_chart_file(name: str) -> str:
    if name in CHART_RULES:
        return _rules(CHART_RULES[name])
    if name in chartfiles.FILES:
        return chartfiles.FILES[name]()
    return render(name.removeprefix("crds/"))


DOCS = {"crd-reference.md": ("knnindexes.yaml", "clustermodels.yaml")}


def render_doc(name: str) -> str:
    return "\n".join(crddoc.reference(CRDS[crd]()) for crd in DOCS[name])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m knn_operator.crdgen")
    ap.add_argument("--crds", type=Path, default=Path("crds"))
    ap.add_argument("--rbac", type=Path, default=Path("rbac"))
    ap.add_argument("--chart", type=Path, default=Path("charts/knn-operator"))
    ap.add_argument("--gitops", type=Path, default=Path("gitops"))
    ap.add_argument("--docs", type=Path, default=Path("docs"))
    args = ap.parse_args(argv)
    outputs = (
        (args.crds, CRDS, render),
        (args.rbac, RBAC, render_rbac),
        (args.chart, CHART_FILES, render_chart_file),
        (args.gitops, gitops.FILES, lambda name: gitops.FILES[name]()),
        (args.docs, DOCS, render_doc),
    )
    for directory, names, fn in outputs:
        for name in names:
            path = directory / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(fn(name))
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
