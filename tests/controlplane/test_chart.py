"""The Helm chart (charts/knn-operator), checked with the real helm, kubeconform and
kube-apiserver: lint, schema conformance of every supported value combination (schemas
made offline from this API server's OpenAPI, our CRDs and prometheus-operator's
installed), a server-side dry run, its RBAC against the generated rules, its values
schema, and the CRD upgrade path that Helm itself does not provide."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from knn_devtools.controlplane import ControlPlane
from knn_devtools.kubectl import Helm, Kubectl, KubectlError
from knn_devtools.kubeschemas import SCHEMA_LOCATION, write_schemas
from knn_devtools.tools import REPO_ROOT, tool_path
from knn_operator import rbac

pytestmark = pytest.mark.controlplane

CHART = REPO_ROOT / "charts" / "knn-operator"
VALUE_FILES = sorted((CHART / "ci").glob("*.yaml"))
RELEASE_NAMESPACE = "knn-chart-system"


def _ids(path: Path) -> str:
    return path.stem.removesuffix("-values")


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tool_path("helm")), *args], capture_output=True, text=True, timeout=120, check=check
    )


def render(*args: str) -> str:
    out = helm("template", "knn-operator", str(CHART), "--namespace", RELEASE_NAMESPACE, *args)
    return out.stdout


def documents(manifest: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(manifest) if d]


@pytest.fixture(scope="module")
def schemas(
    kubectl: Kubectl, knn_crds: list[str], thirdparty_crds: list[str], tmp_path_factory: Any
) -> Path:
    """kubeconform's schemas for every kind this API server serves, CRDs included."""
    directory: Path = tmp_path_factory.mktemp("kubeconform-schemas")
    openapi = json.loads(kubectl.run("get", "--raw", "/openapi/v2", timeout=60).stdout)
    written = write_schemas(openapi, directory)
    assert (directory / "apps/v1/deployment.json") in written
    assert (directory / "knn.dev/v1alpha1/knnindex.json") in written
    assert (directory / "monitoring.coreos.com/v1/podmonitor.json") in written
    return directory


def kubeconform(schemas: Path, manifest: Path) -> subprocess.CompletedProcess[str]:
    # Only the local schemas: a kind without one fails (no -ignore-missing-schemas).
    return subprocess.run(
        [
            str(tool_path("kubeconform")),
            "-strict",
            "-summary",
            "-output",
            "json",
            "-schema-location",
            f"{schemas}/{SCHEMA_LOCATION}",
            str(manifest),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("values", VALUE_FILES, ids=_ids)
def test_helm_lint_strict(values: Path) -> None:
    out = helm("lint", "--strict", str(CHART), "-f", str(values), check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 chart(s) failed" in out.stdout


@pytest.mark.parametrize("values", VALUE_FILES, ids=_ids)
def test_every_rendered_object_conforms_to_the_api_servers_schemas(
    values: Path, schemas: Path, tmp_path: Path
) -> None:
    manifest = tmp_path / "chart.yaml"
    manifest.write_text(render("--include-crds", "-f", str(values)))
    out = kubeconform(schemas, manifest)
    report = json.loads(out.stdout)
    assert out.returncode == 0, json.dumps(report["resources"], indent=1)
    kinds = {d["kind"] for d in documents(manifest.read_text())}
    assert report["summary"]["valid"] == len(documents(manifest.read_text())), report
    assert {"Deployment", "CustomResourceDefinition"} <= kinds


def test_kubeconform_with_these_schemas_rejects_a_misspelt_field(
    schemas: Path, tmp_path: Path
) -> None:
    """The conformance test above can fail: strict schemas catch an unknown field deep
    in a pod template and a wrong type in the CRD's own kind."""
    docs = documents(render("--include-crds"))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Never"
    service = next(d for d in docs if d["kind"] == "Service")
    service["spec"]["ports"][0]["port"] = "eight-thousand"
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    out = kubeconform(schemas, manifest)
    assert out.returncode != 0
    errors = {r["kind"]: r["msg"] for r in json.loads(out.stdout)["resources"]}
    assert "imagePullPolicyy" in errors["Deployment"]
    assert "/spec/ports/0/port" in errors["Service"]


@pytest.fixture(scope="module")
def release_namespaces(kubectl: Kubectl) -> list[str]:
    """The chart's namespace and the namespaced combination's two, warning on (and
    enforcing) the restricted Pod Security profile."""
    names = [RELEASE_NAMESPACE, "knn-chart-team-a", "knn-chart-team-b"]
    for name in names:
        labels = {
            f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn")
        }
        namespace: dict[str, Any] = {"apiVersion": "v1", "kind": "Namespace"}
        namespace["metadata"] = {"name": name, "labels": labels}
        kubectl.apply_manifest(json.dumps(namespace))
    return names


def dry_run(kubectl: Kubectl, manifest: str) -> subprocess.CompletedProcess[str]:
    return kubectl.run(
        "apply", "--server-side", "--dry-run=server", "--field-manager=helm", "-f", "-",
        stdin=manifest, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("values", VALUE_FILES, ids=_ids)
def test_the_api_server_accepts_the_rendered_chart_with_no_pod_security_warning(
    values: Path,
    kubectl: Kubectl,
    knn_crds: list[str],
    thirdparty_crds: list[str],
    release_namespaces: list[str],
) -> None:
    out = dry_run(kubectl, render("-f", str(values)))
    assert out.returncode == 0, out.stderr
    assert "PodSecurity" not in out.stderr, out.stderr
    assert "deployment.apps/knn-operator serverside-applied (server dry run)" in out.stdout


def test_the_pod_security_check_can_fail(
    kubectl: Kubectl, knn_crds: list[str], release_namespaces: list[str]
) -> None:
    docs = documents(render())
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    del deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    out = dry_run(kubectl, yaml.safe_dump(deployment))
    assert 'would violate PodSecurity "restricted:latest"' in out.stderr, out.stderr


def _rules(manifest: str, kind: str) -> list[list[dict[str, Any]]]:
    return [d["rules"] for d in documents(manifest) if d["kind"] == kind]


def test_rbac_is_the_generated_rules_and_secrets_only_on_request() -> None:
    default = render()
    assert _rules(default, "ClusterRole") == [rbac.BASE_RULES]
    assert _rules(default, "Role") == []
    with_secrets = render("--set", "rbac.prometheusSecrets=true")
    assert _rules(with_secrets, "ClusterRole") == [rbac.RULES]
    namespaced = render("--set", "watchNamespaces={alpha,beta}")
    assert _rules(namespaced, "ClusterRole") == []
    roles = [d for d in documents(namespaced) if d["kind"] in ("Role", "RoleBinding")]
    assert sorted((d["kind"], d["metadata"]["namespace"]) for d in roles) == [
        ("Role", "alpha"), ("Role", "beta"), ("RoleBinding", "alpha"), ("RoleBinding", "beta"),
    ]  # fmt: skip
    assert all(r == rbac.BASE_RULES for r in _rules(namespaced, "Role"))
    deployment = next(d for d in documents(namespaced) if d["kind"] == "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [a for a in args if a.startswith("--namespace=")] == [
        "--namespace=alpha",
        "--namespace=beta",
    ]
    for manifest in (default, with_secrets, namespaced):
        for rules in _rules(manifest, "ClusterRole") + _rules(manifest, "Role"):
            for rule in rules:
                assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("imagee.tag=x", "additional properties 'imagee' not allowed"),
        ("replicaCount=2", "/replicaCount"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("watchNamespaces={Team_A}", "/watchNamespaces/0"),
        ("metrics.serviceMonitor.interval=soon", "/metrics/serviceMonitor/interval"),
    ],
)
def test_values_schema_rejects_bad_values_naming_them(setting: str, named: str) -> None:
    out = helm("template", "r", str(CHART), "--set", setting, check=False)
    assert out.returncode != 0
    assert named in out.stderr, out.stderr


def test_a_service_monitor_without_its_service_is_refused_with_a_reason() -> None:
    out = helm(
        "template", "r", str(CHART), "--set", "metrics.serviceMonitor.enabled=true",
        "--set", "metrics.service.enabled=false", check=False,
    )  # fmt: skip
    assert out.returncode != 0
    assert "needs metrics.service.enabled" in out.stderr


# -- CRD upgrades ----------------------------------------------------------------------


@pytest.fixture
def fresh_control_plane(tmp_path: Path) -> Iterator[ControlPlane]:
    """Its own API server: this test installs an older CRD, which must not leak into the
    session's."""
    with ControlPlane(log_dir=tmp_path / "logs", echo=None) as cp:
        yield cp


def _older_chart(tmp_path: Path) -> Path:
    """The chart as it was before spec.rollout existed in the CRD."""
    old = tmp_path / "knn-operator"
    shutil.copytree(CHART, old)
    crd_path = old / "crds" / "knnindexes.yaml"
    crd = yaml.safe_load(crd_path.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    del spec["properties"]["rollout"]
    # Rules of the spec that read spec.rollout came with it.
    rules = spec.get("x-kubernetes-validations") or []
    spec["x-kubernetes-validations"] = [r for r in rules if "rollout" not in r["rule"]]
    crd_path.write_text(yaml.safe_dump(crd, sort_keys=False))
    return old


def _has_rollout(kubectl: Kubectl) -> bool:
    crd = kubectl.json("get", "crd", "knnindexes.knn.dev")
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return "rollout" in spec["properties"]


KNN_INDEX_WITH_ROLLOUT = {
    "apiVersion": "knn.dev/v1alpha1",
    "kind": "KnnIndex",
    "metadata": {"name": "products", "namespace": RELEASE_NAMESPACE},
    "spec": {
        "source": {"uri": "pvc://data/vectors.npy", "dimension": 8},
        "storage": {"uri": "pvc://data/artifacts"},
        "rollout": {"steps": [{"setWeight": 20}, {"pause": {"duration": "1m"}}]},
    },
}


def test_helm_upgrade_plus_the_documented_crd_step_moves_the_crd_to_the_new_schema(
    fresh_control_plane: ControlPlane, tmp_path: Path
) -> None:
    kubectl = fresh_control_plane.kubectl()
    helm_ = Helm(kubectl.kubeconfig)
    common = ["--namespace", RELEASE_NAMESPACE, "--create-namespace"]
    helm_.run("install", "knn-operator", str(_older_chart(tmp_path)), *common)
    assert not _has_rollout(kubectl)

    helm_.run("upgrade", "knn-operator", str(CHART), *common)
    # Helm never upgrades crds/: the new field is still unknown, and a KnnIndex that
    # uses it is refused rather than silently pruned.
    assert not _has_rollout(kubectl)
    with pytest.raises(KubectlError, match=r"\.spec\.rollout: field not declared in schema"):
        kubectl.run(
            "apply", "--server-side", "--field-manager=user", "-f", "-",
            stdin=json.dumps(KNN_INDEX_WITH_ROLLOUT),
        )  # fmt: skip

    # The step the chart's README and NOTES give.
    crds = helm_.run("show", "crds", str(CHART)).stdout
    kubectl.run(
        "apply", "--server-side", "--force-conflicts", "-f", "-", stdin=crds
    )  # fmt: skip
    kubectl.run("wait", "--for=condition=Established", "crd/knnindexes.knn.dev")
    assert _has_rollout(kubectl)
    kubectl.run(
        "apply", "--server-side", "--field-manager=user", "-f", "-",
        stdin=json.dumps(KNN_INDEX_WITH_ROLLOUT),
    )  # fmt: skip
    stored = kubectl.json("get", "knnindex", "products", "-n", RELEASE_NAMESPACE)
    assert stored["spec"]["rollout"]["steps"][0] == {"setWeight": 20}
    status = helm_.run("status", "knn-operator", "-n", RELEASE_NAMESPACE, "-o", "json").stdout
    assert json.loads(status)["version"] == 2
