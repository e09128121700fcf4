"""Generated manifests: security profile, probes, identity; checked-in files
equal what the generators produce (models and CRD cannot drift)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from knn_operator import crdgen, rbac
from knn_operator.builders.common import Owner
from knn_operator.builders.deployment import serving_deployment
from knn_operator.builders.job import builder_job
from knn_operator.models.knnindex import KnnIndexSpec
from knn_operator.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
OWNER = Owner("products", "shop", "uid-1")
SPEC = KnnIndexSpec.model_validate(
    {
        "source": {"uri": "pvc://vectors/emb.npy", "dimension": 8, "secretName": "src-creds"},
        "storage": {"uri": "pvc://artifacts/products"},
    }
)


def test_checked_in_crds_and_rbac_match_the_generators() -> None:
    for name in crdgen.CRDS:
        assert (ROOT / "crds" / name).read_text() == crdgen.render(name), (
            f"crds/{name} is stale: run `make generate`"
        )
    for name in crdgen.RBAC:
        assert (ROOT / "rbac" / name).read_text() == crdgen.render_rbac(name), (
            f"rbac/{name} is stale: run `make generate`"
        )


def test_crd_schema_names_every_model_field() -> None:
    crd = yaml.safe_load((ROOT / "crds" / "knnindexes.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]

    def walk(model: Any, node: dict[str, Any], path: str) -> None:
        props = node["properties"]
        for name, field in model.model_fields.items():
            alias = field.alias or name
            assert alias in props, f"{path}.{alias} missing from the CRD"
            sub = field.annotation
            for candidate in getattr(sub, "__args__", (sub,)):
                if (
                    isinstance(candidate, type)
                    and hasattr(candidate, "model_fields")
                    and (props[alias].get("properties") is not None)
                ):
                    walk(candidate, props[alias], f"{path}.{alias}")

    walk(KnnIndexSpec, schema, "spec")


def _pod(obj: dict[str, Any]) -> Any:
    return obj["spec"]["template"]["spec"]


def test_job_and_deployment_meet_the_restricted_profile() -> None:
    for obj in (
        builder_job(OWNER, SPEC, "v1", Settings()),
        serving_deployment(OWNER, SPEC, "v1", 2, Settings()),
    ):
        pod = _pod(obj)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert c["resources"]["requests"]
            assert {"secretRef": {"name": "src-creds"}} in c["envFrom"]


def test_pvc_sources_are_mounted_read_only_and_storage_writable_for_the_builder() -> None:
    job = builder_job(OWNER, SPEC, "v1", Settings())
    vols = {
        v["persistentVolumeClaim"]["claimName"]: v["persistentVolumeClaim"]["readOnly"]
        for v in _pod(job)["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert vols == {"vectors": True, "artifacts": False}
    dep = serving_deployment(OWNER, SPEC, "v1", 2, Settings())
    vols = {
        v["persistentVolumeClaim"]["claimName"]: v["persistentVolumeClaim"]["readOnly"]
        for v in _pod(dep)["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert vols == {"vectors": True, "artifacts": True}


def test_serving_pods_carry_identity_probes_and_scrape_annotations() -> None:
    dep = serving_deployment(OWNER, SPEC, "v1", 2, Settings())
    tmpl = dep["spec"]["template"]
    assert tmpl["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    c = tmpl["spec"]["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    assert env["KNN_INDEX_NAME"]["value"] == "products"
    assert env["KNN_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["command"][c["command"].index("--artifact") + 1] == "pvc://artifacts/products/v1"


def test_role_and_cluster_role_share_rules() -> None:
    assert rbac.role("ns")["rules"] == rbac.cluster_role()["rules"]
