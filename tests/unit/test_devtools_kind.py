"""`make e2e-kind` cannot run without Docker; what it hands to kind and kubectl can be
checked here: the image names, the PersistentVolume, the dataset, and that the
Dockerfiles name make targets that exist."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from knn_devtools import kind
from knn_devtools.buildkit import OPERATOR, PORTABLE_BUILD_ARGS, SERVING
from knn_devtools.incluster import DATA_PV, data_pv_manifest
from knn_devtools.tools import REPO_ROOT


def _make_targets() -> set[str]:
    text = (REPO_ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z0-9-]+):", text, flags=re.MULTILINE))


@pytest.mark.parametrize("dockerfile", ["Dockerfile.serving", "Dockerfile.operator"])
def test_dockerfile_comments_name_existing_make_targets(dockerfile: str) -> None:
    comments = [
        line for line in (REPO_ROOT / dockerfile).read_text().splitlines() if line.startswith("#")
    ]
    named = set(re.findall(r"`make ([a-z0-9-]+)`", "\n".join(comments)))
    assert "e2e-kind" in named
    assert named <= _make_targets(), named - _make_targets()


def test_images_are_the_local_clusters_names_and_build_args(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert kind.main(["images"]) == 0
    names, args = capsys.readouterr().out.splitlines()
    assert names.split() == [SERVING.name(), OPERATOR.name()]
    assert args.split() == list(PORTABLE_BUILD_ARGS)


def test_the_pv_is_the_one_the_example_claims() -> None:
    pv = yaml.safe_load(data_pv_manifest("/var/local/knn-data"))
    assert pv["metadata"]["name"] == DATA_PV
    assert pv["spec"]["hostPath"] == {"path": "/var/local/knn-data", "type": "Directory"}
    docs = list(yaml.safe_load_all(kind.EXAMPLE.read_text()))
    claims = [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    assert [c["spec"]["volumeName"] for c in claims] == [DATA_PV]
    # A claim binds only if the PV offers its access modes.
    assert set(claims[0]["spec"]["accessModes"]) <= set(pv["spec"]["accessModes"])


def test_dataset_matches_the_example(tmp_path: Path) -> None:
    out = tmp_path / "d" / "products.npy"
    assert kind.main(["dataset", str(out)]) == 0
    data = np.load(out)
    assert data.shape == (kind.VECTORS, kind.DIMENSION)
    assert data.dtype == np.float32
    index = next(d for d in yaml.safe_load_all(kind.EXAMPLE.read_text()) if d["kind"] == "KnnIndex")
    assert index["spec"]["source"]["dimension"] == kind.DIMENSION
    assert index["spec"]["source"]["uri"].endswith("/datasets/products.npy")


def test_tools_honour_explicit_binaries(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Explicit binaries are used as given: nothing is built.
    monkeypatch.setenv("KIND", "/opt/kind")
    monkeypatch.setenv("KUBECTL", "/opt/kubectl")
    monkeypatch.setenv("KNN_NO_BUILD", "1")
    assert kind.main(["tools"]) == 0
    assert capsys.readouterr().out.splitlines() == ["/opt/kind", "/opt/kubectl"]
