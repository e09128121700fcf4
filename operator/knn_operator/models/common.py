"""Building blocks shared by KnnIndex and ClusterModel specs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue
from pydantic.alias_generators import to_camel

# Go-style durations as Kubernetes users write them: 30s, 2m, 1h30m, 500ms.
DURATION_PATTERN = r"^([0-9]+(ms|s|m|h))+$"
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
SOURCE_URI_PATTERN = r"^(file|pvc|s3|https?)://.+"
STORAGE_URI_PATTERN = r"^(file|pvc|s3)://.+"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


def cel(
    rule: str, message: str, *, reason: str | None = None, field_path: str | None = None
) -> dict[str, str]:
    """An x-kubernetes-validations rule; field_path makes the error name the field."""
    out = {"rule": rule, "message": message}
    if reason:
        out["reason"] = reason
    if field_path:
        out["fieldPath"] = field_path
    return out


def validations(*rules: dict[str, str]) -> ConfigDict:
    """Model config carrying CEL rules; pydantic merges it with the parent's config."""
    rule_list: list[JsonValue] = [dict(r) for r in rules]
    return ConfigDict(json_schema_extra={"x-kubernetes-validations": rule_list})


def k8s_extra(**extra: Any) -> dict[str, Any]:
    """Schema keywords for the CRD that pydantic does not emit itself."""
    return extra


class Model(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields refused."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


Quantity = int | str  # Kubernetes resource.Quantity, int-or-string on the wire


# Kubernetes' own schema for a map of resource.Quantity values.
_QUANTITY_MAP = k8s_extra(
    additionalProperties={
        "x-kubernetes-int-or-string": True,
        "pattern": QUANTITY_PATTERN,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
    },
)


class Resources(Model):
    requests: dict[str, Quantity] | None = Field(
        default=None, json_schema_extra=_QUANTITY_MAP, description="e.g. {cpu: 500m, memory: 1Gi}"
    )
    limits: dict[str, Quantity] | None = Field(
        default=None, json_schema_extra=_QUANTITY_MAP, description="e.g. {memory: 2Gi}"
    )


class Condition(Model):
    """metav1.Condition."""

    type: str
    status: Literal["True", "False", "Unknown"]
    observed_generation: int | None = None
    last_transition_time: str
    reason: str
    message: str = ""


class ObjectMeta(BaseModel):
    """The metadata the operator reads of its own resources (everything else is ignored)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    name: str
    namespace: str = ""
    uid: str = ""
    generation: int = 0
    annotations: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    deletion_timestamp: str | None = None
