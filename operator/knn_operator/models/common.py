"""Building blocks shared by KnnIndex and ClusterModel specs."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator
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


# Label and annotation syntax as the API server checks it (a prefix, then a name).
LABEL_KEY_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# Labels the operator sets on its pods and selects them by: a user's must not collide.
RESERVED_LABEL_PREFIXES = ("knn.dev/", "app.kubernetes.io/")
MAX_POD_MAP_ENTRIES = 32


def _string_map(max_value: int) -> dict[str, Any]:
    return k8s_extra(
        maxProperties=MAX_POD_MAP_ENTRIES,
        additionalProperties={"type": "string", "maxLength": max_value},
    )


def _valid_keys(field: str, *, values: bool) -> str:
    """CEL: every key of self.<field> (and value, if ``values``) is valid label syntax
    (raw strings: the patterns hold backslashes)."""
    rule = f"size(k) <= 317 && k.matches(r'{LABEL_KEY_PATTERN}')"
    if values:
        rule += f" && self.{field}[k].matches(r'{LABEL_VALUE_PATTERN}')"
    return f"!has(self.{field}) || self.{field}.all(k, {rule})"


class Toleration(Model):
    key: str | None = Field(
        default=None, max_length=317, pattern=LABEL_KEY_PATTERN, description="Taint key"
    )
    operator: Literal["Exists", "Equal"] | None = Field(
        default=None, description="Equal (the default) or Exists"
    )
    value: str | None = Field(
        default=None, max_length=63, pattern=LABEL_VALUE_PATTERN, description="Taint value"
    )
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect; omitted: every effect"
    )
    toleration_seconds: int | None = Field(
        default=None, ge=0, description="NoExecute: how long the pod stays once tainted"
    )

    model_config = validations(
        cel(
            "!has(self.operator) || self.operator != 'Exists' || !has(self.value)",
            "a toleration with operator Exists takes no value",
        ),
        cel(
            "has(self.key) || (has(self.operator) && self.operator == 'Exists')",
            "a toleration without a key must use operator Exists",
        ),
    )


class LocalObjectReference(Model):
    name: str = Field(pattern=DNS_SUBDOMAIN_PATTERN, max_length=253, description="Its name")


# Kubernetes' Affinity has dozens of nested types; the API server checks them when the
# operator writes the pod template, and the operator reports what it refuses.
_OPEN_OBJECT = k8s_extra(type="object", **{"x-kubernetes-preserve-unknown-fields": True})


class Affinity(Model):
    node_affinity: dict[str, JsonValue] | None = Field(
        default=None, json_schema_extra=_OPEN_OBJECT, description="Kubernetes NodeAffinity"
    )
    pod_affinity: dict[str, JsonValue] | None = Field(
        default=None, json_schema_extra=_OPEN_OBJECT, description="Kubernetes PodAffinity"
    )
    pod_anti_affinity: dict[str, JsonValue] | None = Field(
        default=None, json_schema_extra=_OPEN_OBJECT, description="Kubernetes PodAntiAffinity"
    )


class PodOverrides(Model):
    """Where and how the operator's pods run, as cluster operators need to say it:
    scheduling, pull credentials, priority and their own labels and annotations."""

    node_selector: dict[str, str] | None = Field(
        default=None,
        json_schema_extra=_string_map(63),
        description="Node labels the pods must match",
    )
    tolerations: list[Toleration] | None = Field(
        default=None, max_length=MAX_POD_MAP_ENTRIES, description="Taints the pods tolerate"
    )
    affinity: Affinity | None = Field(default=None, description="Node and pod (anti-)affinity")
    image_pull_secrets: list[LocalObjectReference] | None = Field(
        default=None, max_length=16, description="Secrets for pulling the image"
    )
    priority_class_name: str | None = Field(
        default=None,
        pattern=DNS_SUBDOMAIN_PATTERN,
        max_length=253,
        description="PriorityClass of the pods",
    )
    labels: dict[str, str] | None = Field(
        default=None,
        json_schema_extra=_string_map(63),
        description="Extra pod labels (not knn.dev/ or app.kubernetes.io/: the operator's)",
    )
    annotations: dict[str, str] | None = Field(
        default=None,
        json_schema_extra=_string_map(4096),
        description="Extra pod annotations",
    )

    model_config = validations(
        cel(
            "!has(self.labels) || self.labels.all(k, "
            + " && ".join(f"!k.startsWith('{p}')" for p in RESERVED_LABEL_PREFIXES)
            + ")",
            "pod labels under knn.dev/ and app.kubernetes.io/ are the operator's",
            field_path=".labels",
        ),
        cel(
            _valid_keys("labels", values=True),
            "pod labels must be valid Kubernetes label keys and values",
            field_path=".labels",
        ),
        cel(
            _valid_keys("annotations", values=False),
            "pod annotation keys must be valid Kubernetes keys",
            field_path=".annotations",
        ),
        cel(
            _valid_keys("nodeSelector", values=True),
            "nodeSelector must use valid Kubernetes label keys and values",
            field_path=".nodeSelector",
        ),
    )

    @field_validator("labels")
    @classmethod
    def _not_reserved(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        for key in v or {}:
            if key.startswith(RESERVED_LABEL_PREFIXES):
                raise ValueError(
                    f"pod label {key!r}: knn.dev/ and app.kubernetes.io/ labels are the operator's"
                )
        return v


PERCENT_PATTERN = r"^[0-9]{1,3}%$"


def _int_or_percent(description: str) -> Any:
    return Field(
        default=None,
        json_schema_extra=k8s_extra(**{"x-kubernetes-int-or-string": True}),
        description=description,
    )


class DisruptionBudget(Model):
    """A PodDisruptionBudget for each serving revision, so a node drain never takes more
    of an index's pods at once than it can lose."""

    max_unavailable: int | str | None = _int_or_percent(
        "Pods of a revision a voluntary disruption may take at once (a count or a percent)"
    )
    min_available: int | str | None = _int_or_percent(
        "Pods of a revision that must stay up (a count or a percent)"
    )

    model_config = validations(
        cel(
            "has(self.maxUnavailable) != has(self.minAvailable)",
            "set exactly one of maxUnavailable or minAvailable",
        ),
        *(
            cel(
                f"!has(self.{f}) || (type(self.{f}) == int ? int(self.{f}) >= 0"
                f" : string(self.{f}).matches(r'{PERCENT_PATTERN}'))",
                f"{f} is a count (0 or more) or a percent like 25%",
                field_path=f".{f}",
            )
            for f in ("maxUnavailable", "minAvailable")
        ),
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> DisruptionBudget:
        if (self.max_unavailable is None) == (self.min_available is None):
            raise ValueError("set exactly one of maxUnavailable or minAvailable")
        return self

    @field_validator("max_unavailable", "min_available")
    @classmethod
    def _count_or_percent(cls, v: int | str | None) -> int | str | None:
        if isinstance(v, int) and v < 0:
            raise ValueError("a count must be 0 or more")
        if isinstance(v, str) and not re.match(PERCENT_PATTERN, v):
            raise ValueError(f"{v!r} is neither a count nor a percent like 25%")
        return v
