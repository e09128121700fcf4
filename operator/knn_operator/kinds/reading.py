"""Reading an object of either kind and its children into the planner's Observed:
the same for every kind but the spec and status models and the workload."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from knn_contracts import api
from pydantic import ValidationError

from ..builders.common import Owner
from ..builders.job import BUILDER_COMPONENT, GC_COMPONENT
from ..kube import Body
from ..models.clustermodel import ClusterModelSpec
from ..models.common import ObjectMeta
from ..models.knnindex import KnnIndexSpec, WorkloadStatus
from ..observe import DeploymentState, JobState, deployment_state, job_state
from ..planning import Observed
from ..planning.workload import Workload
from . import Children

log = logging.getLogger("knn_operator")


def _by_label(bodies: Iterable[Body], *keys: str) -> dict[str, Body]:
    """Bodies by the first of `keys` they carry as a label."""
    out: dict[str, Body] = {}
    for b in bodies:
        lbls = b.get("metadata", {}).get("labels") or {}
        v = next((lbls[k] for k in keys if lbls.get(k)), None)
        if v:
            out[v] = b
    return out


def _by_version(bodies: Iterable[Body]) -> dict[str, Body]:
    return _by_label(bodies, api.LABEL_VERSION)


def _component(bodies: Iterable[Body], component: str) -> list[Body]:
    return [
        b
        for b in bodies
        if (b.get("metadata", {}).get("labels") or {}).get(api.LABEL_COMPONENT) == component
    ]


def observer(
    kind: str,
    spec_model: type[KnnIndexSpec] | type[ClusterModelSpec],
    status_model: type[WorkloadStatus],
    workload: Workload,
) -> Callable[[Body, Children], Observed]:
    """The observe function of one kind."""

    def observe(body: Body, children: Children) -> Observed:
        return _observe(body, children, kind, spec_model, status_model, workload)

    return observe


def _observe(
    body: Body,
    children: Children,
    kind: str,
    spec_model: type[KnnIndexSpec] | type[ClusterModelSpec],
    status_model: type[WorkloadStatus],
    workload: Workload,
) -> Observed:
    meta = ObjectMeta.model_validate(body["metadata"])
    key = (meta.namespace, meta.name)
    owner = Owner(meta.name, meta.namespace, meta.uid, kind)
    spec = spec_model.model_validate(body.get("spec") or {})
    try:
        status = status_model.model_validate(body.get("status") or {})
    except ValidationError:
        log.warning("%s/%s: unreadable status; starting afresh", *key)
        status = status_model()
    all_jobs = list(children.jobs(key))
    jobs: dict[str, JobState] = {
        v: job_state(j, children.builder_pods(key, v))
        for v, j in _by_version(_component(all_jobs, BUILDER_COMPONENT)).items()
    }
    gc_jobs = {
        v: job_state(j, ()) for v, j in _by_version(_component(all_jobs, GC_COMPONENT)).items()
    }
    deps: dict[str, DeploymentState] = {
        # Deployments made before revisions existed carry only a version label.
        r: deployment_state(d)
        for r, d in _by_label(
            children.deployments(key), api.LABEL_REVISION, api.LABEL_VERSION
        ).items()
    }
    actions = (api.ANNOTATION_PROMOTE, api.ANNOTATION_ABORT, api.ANNOTATION_RETRY)
    return Observed(
        owner,
        meta.generation,
        spec,
        status,
        jobs,
        deps,
        meta.annotations.get(api.ANNOTATION_REBUILD),
        gc_jobs,
        {a: meta.annotations[a] for a in actions if a in meta.annotations},
        workload=workload,
    )
