"""Pieces every generated manifest shares: names, labels, owner, security."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from knn_contracts import api
from knn_contracts.identity import version_of_revision

from ..models.clustermodel import WorkloadSpec
from ..models.common import PodOverrides, Resources
from ..settings import Settings

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Owner:
    """The KnnIndex (or ClusterModel) the generated objects belong to."""

    name: str
    namespace: str
    uid: str
    kind: str = api.KNN_INDEX_KIND

    def reference(self) -> Manifest:
        return {
            "apiVersion": api.API_VERSION,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


# Per kind: the label naming the owner on everything it owns, and the app name.
OWNER_LABELS = {api.KNN_INDEX_KIND: api.LABEL_INDEX, api.CLUSTER_MODEL_KIND: api.LABEL_MODEL}
APP_NAMES = {api.KNN_INDEX_KIND: "knn-index", api.CLUSTER_MODEL_KIND: "cluster-model"}


def labels(
    owner: Owner,
    version: str | None = None,
    component: str | None = None,
    *,
    revision: str | None = None,
) -> dict[str, str]:
    """A revision id starts with its version; the version label is derived from it.
    A revision id without a suffix is a Deployment made before revisions existed
    (named by version): it gets no revision label, since a selector cannot change."""
    out = {
        "app.kubernetes.io/name": APP_NAMES[owner.kind],
        "app.kubernetes.io/instance": owner.name,
        "app.kubernetes.io/managed-by": "knn-operator",
        OWNER_LABELS[owner.kind]: owner.name,
    }
    if revision:
        version = version_of_revision(revision)
    if version:
        out[api.LABEL_VERSION] = version
    if revision and revision != version:
        out[api.LABEL_REVISION] = revision
    if component:
        out[api.LABEL_COMPONENT] = component
    return out


def metadata(owner: Owner, name: str, lbls: dict[str, str]) -> Manifest:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": lbls,
        "ownerReferences": [owner.reference()],
    }


def deployment_name(owner: Owner, revision: str) -> str:
    return f"{owner.name}-{revision}"


def job_name(owner: Owner, version: str) -> str:
    return f"{owner.name}-build-{version}"


def gc_job_name(owner: Owner, version: str) -> str:
    return f"{owner.name}-gc-{version}"


def restricted_container_security() -> Manifest:
    """Pod Security 'restricted' profile for a container."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def restricted_pod_security() -> Manifest:
    return {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def resources(r: Resources | None, default_requests: dict[str, str]) -> Manifest:
    out: Manifest = {"requests": dict(default_requests)}
    if r is not None:
        if r.requests:
            out["requests"] = {k: str(v) for k, v in r.requests.items()}
        if r.limits:
            out["limits"] = {k: str(v) for k, v in r.limits.items()}
    return out


@dataclass(frozen=True)
class Mounts:
    volumes: list[Manifest]
    volume_mounts: list[Manifest]
    env_from: list[Manifest]


def storage_mounts(spec: WorkloadSpec, settings: Settings, *, read_only: bool) -> Mounts:
    """PVCs named by pvc:// URIs mounted under the PVC root; secrets as environment."""
    claims: dict[str, bool] = {}
    for uri, ro in (
        (spec.source.uri, True),
        (spec.source.ids, True),
        (spec.storage.uri, read_only),
    ):
        if uri and urlsplit(uri).scheme == "pvc":
            claim = urlsplit(uri).netloc
            claims[claim] = claims.get(claim, True) and ro
    volumes: list[Manifest] = [{"name": "tmp", "emptyDir": {}}]
    mounts: list[Manifest] = [{"name": "tmp", "mountPath": "/tmp"}]
    for i, (claim, ro) in enumerate(sorted(claims.items())):
        volumes.append(
            {
                "name": f"pvc-{i}",
                "persistentVolumeClaim": {"claimName": claim, "readOnly": ro},
            }
        )
        mounts.append(
            {"name": f"pvc-{i}", "mountPath": f"{settings.pvc_root}/{claim}", "readOnly": ro}
        )
    secrets = sorted({s for s in (spec.source.secret_name, spec.storage.secret_name) if s})
    return Mounts(volumes, mounts, [{"secretRef": {"name": s}} for s in secrets])


def container(
    name: str,
    image: str,
    command: list[str],
    settings: Settings,
    mounts: Mounts,
    resource_manifest: Manifest,
    *,
    env: list[Manifest] | None = None,
    **extra: Any,
) -> Manifest:
    """A container of the restricted profile that reaches the index's storage."""
    out: Manifest = {
        "name": name,
        "image": image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": command,
        "env": [*(env or []), {"name": "KNN_PVC_ROOT", "value": settings.pvc_root}],
        **extra,
        "resources": resource_manifest,
        "securityContext": restricted_container_security(),
        "volumeMounts": mounts.volume_mounts,
    }
    if mounts.env_from:
        out["envFrom"] = mounts.env_from
    return out


def pod_spec(main: Manifest, mounts: Mounts, **extra: Any) -> Manifest:
    """Pods of the restricted profile; they need no API token."""
    return {
        **extra,
        "automountServiceAccountToken": False,
        "securityContext": restricted_pod_security(),
        "containers": [main],
        "volumes": mounts.volumes,
    }


def pod_template(
    lbls: dict[str, str],
    annotations: dict[str, str],
    spec: Manifest,
    overrides: PodOverrides | None,
) -> Manifest:
    """A pod template with the user's overrides (spec.build.pod, spec.serving.pod): their
    labels and annotations beside the operator's (which win: they select the pods), and
    their scheduling fields in the pod spec."""
    o = overrides or PodOverrides()
    meta: Manifest = {"labels": {**(o.labels or {}), **lbls}}
    if annotations or o.annotations:
        meta["annotations"] = {**(o.annotations or {}), **annotations}
    extra: Manifest = {}
    if o.node_selector:
        extra["nodeSelector"] = dict(o.node_selector)
    if o.tolerations:
        extra["tolerations"] = [
            t.model_dump(by_alias=True, exclude_none=True) for t in o.tolerations
        ]
    if o.affinity:
        affinity = o.affinity.model_dump(mode="json", by_alias=True, exclude_none=True)
        if affinity:
            extra["affinity"] = affinity
    if o.image_pull_secrets:
        extra["imagePullSecrets"] = [{"name": s.name} for s in o.image_pull_secrets]
    if o.priority_class_name:
        extra["priorityClassName"] = o.priority_class_name
    return {"metadata": meta, "spec": {**spec, **extra}}


def artifact_uri(spec: WorkloadSpec, version: str) -> str:
    return spec.storage.uri.rstrip("/") + "/" + version
