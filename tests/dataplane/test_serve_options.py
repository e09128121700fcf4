"""knn-serve as the operator runs it: artifact URIs (file://, pvc://), a
serving-time --ef-search that the recall gauge measures, and strict input
element types."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

if TYPE_CHECKING:
    from tests.dataplane import datasets as ds
    from tests.dataplane import servers as sv
else:
    import datasets as ds
    import servers as sv

DIM = 24


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> sv.Artifact:
    # Uniform high-dimensional data is hard for HNSW, so ef visibly moves recall.
    data = ds.uniform(4000, DIM, seed=21)
    work = tmp_path_factory.mktemp("serve-options")
    return sv.build_artifact(
        work,
        data,
        "cosine",
        m=4,
        ef_construction=16,
        ef_search=64,
        probe_queries=300,
        min_recall=0.0,
    )


@pytest.fixture(scope="module")
def server(
    artifact: sv.Artifact, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[sv.KnnServe]:
    with sv.serve(artifact.directory, tmp_path_factory.mktemp("logs")) as s:
        yield s


def recall_gauge(server: sv.KnnServe) -> float:
    samples = sv.metric_samples(server.metrics_text(), "knn_recall_ratio")
    assert len(samples) == 1, samples
    return float(samples[0].value)


def test_artifact_by_file_and_pvc_uri(artifact: sv.Artifact, tmp_path: Path) -> None:
    pvc_root = artifact.directory.parent.parent  # .../artifacts/v1 → claim "artifacts"
    uris = {
        "file": f"file://{artifact.directory}",
        "pvc": f"pvc://artifacts/{artifact.directory.name}",
    }
    for scheme, uri in uris.items():
        env = {"KNN_PVC_ROOT": str(pvc_root)} if scheme == "pvc" else None
        with sv.serve(uri, tmp_path / scheme, env=env) as s, s.client() as c:
            info = c.get("/v1/info").json()
            assert info["version"] == artifact.manifest.version, scheme


def test_missing_pvc_artifact_is_refused_and_unready(tmp_path: Path) -> None:
    with (
        sv.serve(
            "pvc://nowhere/v1", tmp_path, ready=False, env={"KNN_PVC_ROOT": str(tmp_path)}
        ) as s,
        s.client() as c,
    ):
        r = c.get("/readyz")
        assert r.status_code == 503
        assert "no manifest.json" in r.json()["detail"]


def test_ef_search_override_is_what_the_recall_gauge_measures(
    artifact: sv.Artifact, server: sv.KnnServe, tmp_path: Path
) -> None:
    default = recall_gauge(server)
    with sv.serve(artifact.directory, tmp_path, args=["--ef-search", "10"]) as narrow:
        low = recall_gauge(narrow)
    with sv.serve(artifact.directory, tmp_path, args=["--ef-search", "400"]) as wide:
        high = recall_gauge(wide)
    assert low < default < high, (low, default, high)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"vector": [0.5] * (DIM - 1) + ["0.5"]}, "numbers only (found strings)"),
        ({"vectors": [[0.5] * DIM, ["1"] * DIM]}, "numbers only (found strings)"),
        ({"vector": [True] * DIM}, "must be a list of"),
        ({"vectors": [[True] * DIM]}, "numbers only (found booleans)"),
        ({"vector": [0.0] * DIM}, "zero vector"),
    ],
)
def test_strict_elements(server: sv.KnnServe, body: dict[str, object], says: str) -> None:
    with server.client() as c:
        r = c.post("/v1/query", json=body)
    assert r.status_code == 422, r.text
    assert says in r.json()["detail"]


def test_nan_literal_is_named(server: sv.KnnServe) -> None:
    with server.client() as c:
        r = c.post(
            "/v1/query",
            content=b'{"vector": [NaN], "k": 1}',
            headers={"content-type": "application/json"},
        )
    assert r.status_code == 400
    assert "NaN and Infinity are not JSON numbers" in r.json()["detail"]


def test_zero_vector_in_binary_body_is_refused(server: sv.KnnServe) -> None:
    body = np.zeros((2, DIM), dtype="<f4").tobytes()
    with server.client() as c:
        r = c.post(
            "/v1/query?k=3", content=body, headers={"content-type": "application/octet-stream"}
        )
    assert r.status_code == 422 and "zero vector" in r.json()["detail"]


def test_bad_ef_search_option_is_refused(artifact: sv.Artifact, tmp_path: Path) -> None:
    import subprocess

    out = subprocess.run(
        [str(sv.KNN_SERVE), "--artifact", str(artifact.directory), "--ef-search", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0 and "--ef-search must be between 1 and" in out.stderr


def test_a_revision_labels_every_series_and_must_belong_to_the_artifact(
    artifact: sv.Artifact, tmp_path: Path
) -> None:
    version = artifact.manifest.version
    revision = f"{version}-0a1b2"
    ok = sv.serve(artifact.directory, tmp_path / "ok", args=["--revision", revision])
    with ok as s, s.client() as c:
        assert c.post("/v1/query", json={"vector": [0.5] * DIM}).status_code == 200
        text = c.get("/metrics").text
    series = [line for line in text.splitlines() if line.startswith("knn_") and "{" in line]
    assert series and all(f'version="{revision}"' in line for line in series), series[:5]
    other = ["--revision", "v0000beef-0a1b2"]
    bad = sv.serve(artifact.directory, tmp_path / "bad", ready=False, args=other)
    with bad as s, s.client() as c:
        r = c.get("/readyz")
        assert r.status_code == 503
        assert f"not a revision of the artifact's version {version}" in r.json()["detail"]
