"""`knn-serve --model-name` serving a k-means artifact built by the real `knn-build`,
over HTTP on loopback. Assignments are checked against a numpy brute-force nearest
centroid (datasets.nearest), PSI against scipy and a hand computation, and bad
input against what /v1/query answers to the same bytes."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from knn_contracts.kmeans import CENTROIDS_FILE, KMEANS_PROBES_FILE
from knn_serving.artifact import KMeansProbes
from scipy.stats import entropy
from sklearn.metrics import silhouette_score

if TYPE_CHECKING:  # mypy resolves modules from the repository root...
    from tests.dataplane import datasets as ds
    from tests.dataplane import servers as sv
    from tests.dataplane import test_serve_bad_input as bad
else:  # ...pytest puts this directory (it has no __init__.py) on sys.path.
    import datasets as ds
    import servers as sv
    import test_serve_bad_input as bad

DIM, K, N = bad.DIM, 5, 3000
WINDOW = 500
EPSILON = 1e-4  # the documented floor for empty bins (knn_serving.drift.PSI_EPSILON)


@dataclass(frozen=True)
class Model:
    art: sv.KMeansArtifact
    centroids: npt.NDArray[np.float32]
    centres: npt.NDArray[np.float32]  # the true centres the data was drawn around


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Model:
    tmp = tmp_path_factory.mktemp("kmeans-serve")
    data, _, centres = ds.blobs(N, DIM, K, seed=41)
    art = sv.build_kmeans_artifact(tmp, data, clusters=K, probe_points=100)
    return Model(art, np.load(art.directory / "centroids.npy"), centres)


def fresh(m: Model, n: int, *, seed: int, only: list[int] | None = None) -> npt.NDArray[np.float32]:
    """New draws from the training distribution (or from some of its blobs only):
    vectors the server has never seen."""
    rng = np.random.default_rng(seed)
    which = rng.choice(only if only is not None else K, size=n)
    noise = rng.standard_normal((n, DIM), dtype=np.float32)
    out: npt.NDArray[np.float32] = (m.centres[which] + noise).astype(np.float32)
    return out


@pytest.fixture(scope="module", params=sv.HTTP_FRONTS)
def server(
    request: pytest.FixtureRequest, model: Model, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[sv.ModelServe]:
    logs = tmp_path_factory.mktemp("kmeans-serve-logs")
    with sv.serve_model(model.art.directory, logs, args=sv.front_args(request.param)) as s:
        yield s


def test_single_json_assignment(model: Model, server: sv.ModelServe) -> None:
    points = fresh(model, 20, seed=1)
    want, dist = ds.nearest(points, model.centroids)
    with server.client() as c:
        for p, label, d in zip(points, want, dist, strict=True):
            r = c.post("/v1/assign", json={"vector": p.tolist()})
            assert r.status_code == 200, r.text
            doc = r.json()
            assert doc["cluster"] == int(label)
            assert doc["distance"] == pytest.approx(float(d), rel=1e-6)
            assert doc["version"] == model.art.manifest.version


def test_batch_json_and_binary_assignment(model: Model, server: sv.ModelServe) -> None:
    points = fresh(model, 300, seed=2)
    want, dist = ds.nearest(points, model.centroids)
    with server.client() as c:
        js = c.post("/v1/assign", json={"vectors": points.tolist()})
        bi = c.post(
            "/v1/assign",
            content=points.astype("<f4").tobytes(),
            headers={"content-type": "application/octet-stream"},
        )
    for r in (js, bi):
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert [x["cluster"] for x in results] == want.tolist()
        np.testing.assert_allclose([x["distance"] for x in results], dist, rtol=1e-6)


def test_info_is_the_manifest(model: Model, server: sv.ModelServe) -> None:
    with server.client() as c:
        doc = c.get("/v1/info").json()
    assert doc["kind"] == "kmeans"
    assert doc["parameters"]["clusters"] == K
    assert doc["cluster_sizes"] == model.art.manifest.cluster_sizes


def test_query_route_is_refused_on_a_model(server: sv.ModelServe) -> None:
    with server.client() as c:
        r = c.post("/v1/query", json={"vector": [0.0] * DIM})
    assert r.status_code == 404
    assert r.json()["detail"] == "this server serves a k-means model: use POST /v1/assign"


# --- drift metrics against an independent computation -----------------------------------------


def hand_psi(expected: list[int], actual: npt.NDArray[np.int64]) -> float:
    """PSI written out term by term, empty bins floored at EPSILON."""
    p = np.asarray(expected, dtype=np.float64) / sum(expected)
    q = np.bincount(actual, minlength=len(expected)).astype(np.float64) / actual.shape[0]
    total = 0.0
    for pi, qi in zip(p, q, strict=True):
        pi, qi = max(pi, EPSILON), max(qi, EPSILON)
        total += (qi - pi) * np.log(qi / pi)
    return float(total)


def gauge(text: str, name: str) -> float | None:
    samples = sv.metric_samples(text, name)
    if not samples:
        return None
    (s,) = samples
    assert s.labels["model"] == sv.MODEL_NAME, s.labels
    return float(s.value)


def send(c: httpx.Client, points: npt.NDArray[np.float32], batch: int = 50) -> None:
    for lo in range(0, points.shape[0], batch):
        r = c.post("/v1/assign", json={"vectors": points[lo : lo + batch].tolist()})
        assert r.status_code == 200, r.text


def test_drift_metrics(model: Model, tmp_path: Path) -> None:
    manifest = model.art.manifest
    steady = fresh(model, 600, seed=3)
    shifted = fresh(model, 500, seed=4, only=[0, 1])
    away = fresh(model, 500, seed=5) + np.float32(8.0)
    args = ["--drift-window", str(WINDOW)]
    with sv.serve_model(model.art.directory, tmp_path, args=args) as s, s.client() as c:
        before = s.metrics_text()
        # Nothing assigned yet: no PSI and no ratio (absent, never a made-up 0).
        assert gauge(before, "knn_cluster_drift_psi") is None
        assert gauge(before, "knn_cluster_distance_ratio") is None
        assert gauge(before, "knn_cluster_drift_window_assignments") == 0

        send(c, steady)
        labels, dist = ds.nearest(steady, model.centroids)
        text = s.metrics_text()
        per_cluster = {
            int(x.labels["cluster"]): x.value
            for x in sv.metric_samples(text, "knn_cluster_assignments")
            if x.name.endswith("_total")
        }
        assert per_cluster == dict(enumerate(np.bincount(labels, minlength=K).tolist()))
        (count,) = [
            x.value
            for x in sv.metric_samples(text, "knn_cluster_distance")
            if x.name.endswith("_count")
        ]
        assert count == steady.shape[0]
        window = labels[-WINDOW:]
        value = gauge(text, "knn_cluster_drift_psi")
        assert value is not None
        p = np.asarray(manifest.cluster_sizes, dtype=np.float64)
        q = np.bincount(window, minlength=K).astype(np.float64)
        assert (q > 0).all()  # no empty bin: PSI is exactly the symmetric KL divergence
        assert value == pytest.approx(float(entropy(q, p) + entropy(p, q)), abs=1e-9)
        assert value == pytest.approx(hand_psi(manifest.cluster_sizes, window), abs=1e-9)
        assert value < 0.1  # the same distribution: stable
        ratio = gauge(text, "knn_cluster_distance_ratio")
        assert ratio == pytest.approx(float(dist[-WINDOW:].mean()) / manifest.distances.mean)
        assert ratio is not None and 0.8 < ratio < 1.25
        assert gauge(text, "knn_cluster_drift_window_assignments") == WINDOW

        # Only two of the five blobs: three bins empty, PSI far above 0.25.
        send(c, shifted)
        s_labels, _ = ds.nearest(shifted, model.centroids)
        assert len(set(s_labels.tolist())) == 2
        value = gauge(s.metrics_text(), "knn_cluster_drift_psi")
        assert value == pytest.approx(hand_psi(manifest.cluster_sizes, s_labels), abs=1e-9)
        assert value is not None and value > 1.0

        # Moved away from every centroid: the distance ratio rises.
        send(c, away)
        _, a_dist = ds.nearest(away, model.centroids)
        ratio = gauge(s.metrics_text(), "knn_cluster_distance_ratio")
        assert ratio == pytest.approx(float(a_dist.mean()) / manifest.distances.mean)
        assert ratio is not None and ratio > 3.0


def test_probe_inertia_gauge(model: Model, server: sv.ModelServe) -> None:
    value = gauge(server.metrics_text(), "knn_cluster_probe_inertia_mean")
    assert value == pytest.approx(model.art.manifest.validation.probe_inertia_mean, rel=1e-9)


def test_probe_silhouette_gauge_is_scikit_learns(model: Model, server: sv.ModelServe) -> None:
    """Against scikit-learn's silhouette_score of the artifact's probe points, each
    labelled with its nearest centroid by a brute force of full differences."""
    directory = model.art.directory
    probes = KMeansProbes.load(directory / KMEANS_PROBES_FILE).points.astype(np.float64)
    centroids = np.load(directory / CENTROIDS_FILE).astype(np.float64)
    labels = ((probes[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)
    expected = float(silhouette_score(probes, labels))
    value = gauge(server.metrics_text(), "knn_cluster_probe_silhouette")
    assert value == pytest.approx(expected, abs=1e-9)
    assert value is not None and value > 0.5  # the model's blobs are well separated


def test_exposition_passes_promtool(server: sv.ModelServe) -> None:
    run = sv.promtool_check_metrics(server.metrics_text())
    assert run.returncode == 0, run.stdout + run.stderr


# --- kinds ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> sv.Artifact:
    tmp = tmp_path_factory.mktemp("kmeans-hnsw")
    data = np.random.default_rng(11).standard_normal((600, DIM), dtype=np.float32)
    return sv.build_artifact(tmp, data, "l2", probe_queries=100)


def readyz(server: sv.KnnServe) -> httpx.Response:
    with server.client() as c:
        return c.get("/readyz")


def test_index_server_refuses_a_model(model: Model, tmp_path: Path) -> None:
    with sv.serve(model.art.directory, tmp_path, ready=False) as s:
        s.child.wait_until("refusal", lambda: readyz(s).status_code == 503 and "refused" in
                           readyz(s).text, 30)  # fmt: skip
        detail = readyz(s).json()["detail"]
    assert "is a k-means model (kind kmeans" in detail
    assert "serve a k-means model with --model-name NAME" in detail


def test_model_server_refuses_an_index(index: sv.Artifact, tmp_path: Path) -> None:
    with sv.serve_model(index.directory, tmp_path, ready=False) as s:
        s.child.wait_until("refusal", lambda: "refused" in readyz(s).text, 30)
        r = readyz(s)
        with s.client() as c:
            assign = c.post("/v1/assign", json={"vector": [0.0] * DIM})
    assert r.status_code == 503
    assert "is an HNSW index (kind hnsw" in r.json()["detail"]
    assert "not --model-name" in r.json()["detail"]
    assert assign.status_code == 503


def test_assign_route_is_refused_on_an_index(index: sv.Artifact, tmp_path: Path) -> None:
    with sv.serve(index.directory, tmp_path) as s, s.client() as c:
        r = c.post("/v1/assign", json={"vector": [0.0] * DIM})
    assert r.status_code == 404
    assert r.json()["detail"] == "this server serves an HNSW index: use POST /v1/query"


def test_index_and_model_names_together_are_refused(model: Model) -> None:
    argv = [str(sv.KNN_SERVE), "--artifact", str(model.art.directory)]
    run = subprocess.run(
        [*argv, "--index-name", "a", "--model-name", "b"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode != 0
    assert "give --index-name (an HNSW index) or --model-name (a k-means model), not both" in (
        run.stderr
    )


# --- bad input: what /v1/query answers, word for word -----------------------------------------

# Cases about k and ef do not apply: /v1/assign takes neither (a JSON 'k' is an
# unknown field, binary query parameters are not read). A float32 vector whose
# squared distance overflows float32 in hnswlib is answered in float64 here.
NOT_FOR_ASSIGN = ("k-", "ef-", "binary-k-", "binary-ef-", "neither", "finite-but-distance")
ASSIGN_CASES = [n for n in bad.CASES if not n.startswith(NOT_FOR_ASSIGN)]


@dataclass(frozen=True)
class Pair:
    query: httpx.Client  # an HNSW server
    assign: httpx.Client  # a model server, same dimension and limits


@pytest.fixture(scope="module", params=sv.HTTP_FRONTS)
def pair(
    request: pytest.FixtureRequest,
    model: Model,
    index: sv.Artifact,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pair]:
    logs = tmp_path_factory.mktemp("kmeans-bad-logs")
    args = [*bad.LIMITS, *sv.front_args(request.param)]
    with (
        sv.serve(index.directory, logs / "q", args=args) as q,
        sv.serve_model(model.art.directory, logs / "a", args=args) as a,
        q.client() as qc,
        a.client() as ac,
    ):
        yield Pair(qc, ac)


@pytest.mark.parametrize("name", ASSIGN_CASES)
def test_bad_input_is_answered_as_for_queries(pair: Pair, name: str) -> None:
    case = bad.CASES[name]
    on_query = case.send(pair.query)
    moved = bad.Bad(**{**case.__dict__, "path": case.path.replace("/v1/query", "/v1/assign")})
    on_assign = moved.send(pair.assign)
    bad.assert_detail(on_assign, case.status, case.says.replace("this index", "this model"))
    assert on_assign.status_code == on_query.status_code
    expected = on_query.json()["detail"].replace("this index", "this model")
    assert on_assign.json()["detail"] == expected.replace("/v1/query", "/v1/assign")


def test_k_is_an_unknown_field_for_assign(pair: Pair) -> None:
    r = pair.assign.post("/v1/assign", json={"vector": [0.5] * DIM, "k": 3})
    bad.assert_detail(r, 422, "unknown field(s): k")


# --- fuzzing /v1/assign: no input gets a 5xx -----------------------------------------------------


def sized_assign(doc: dict[str, Any]) -> dict[str, Any]:
    """/v1/assign's JSON body fitted to the model, so valid-looking cases get assigned."""
    body = doc["paths"]["/v1/assign"]["post"]["requestBody"]["content"]["application/json"]
    single, batch = body["schema"]["oneOf"]
    single["properties"]["vector"].update(minItems=DIM, maxItems=DIM)
    batch["properties"]["vectors"].update(minItems=1, maxItems=16)
    batch["properties"]["vectors"]["items"].update(minItems=DIM, maxItems=DIM)
    return doc


FUZZ = [
    (schemathesis.GenerationMode.POSITIVE, False),
    (schemathesis.GenerationMode.NEGATIVE, False),
    (schemathesis.GenerationMode.POSITIVE, True),
]


@pytest.mark.parametrize(
    ("mode", "fit"), FUZZ, ids=[f"{m.value}{' sized' if f else ''}" for m, f in FUZZ]
)
def test_schemathesis_finds_no_server_error_in_assign(
    server: sv.ModelServe, mode: schemathesis.GenerationMode, fit: bool
) -> None:
    with server.client() as c:
        doc = c.get("/openapi.json").json()
    operation = schemathesis.openapi.from_dict(sized_assign(doc) if fit else doc)["/v1/assign"][
        "POST"
    ]
    seen: dict[int, int] = {}

    @settings(
        max_examples=100,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def no_server_error(case: schemathesis.Case[Any]) -> None:
        response = case.call(base_url=server.url, timeout=30)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code < 500, f"{case.body!r:.300} -> {response.text[:500]}"

    no_server_error()
    if fit:
        assert seen.get(200, 0) > 0, f"the sized schema should reach the assignment: {seen}"
    server.child.check_running()
    assert "Traceback" not in server.child.stderr(), server.child.stderr_tail(80)
