"""`kubectl knn` views of a status, with the clock as data."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from knn_operator.kubectl_plugin.main import target
from knn_operator.kubectl_plugin.render import history_view, status_view, table

NOW = dt.datetime(2026, 12, 1, 12, 0, 30, tzinfo=dt.UTC)


def rev(revision: str, ef: int, state: str) -> dict[str, Any]:
    return {"revision": revision, "version": revision.split("-")[0], "efSearch": ef,
            "workers": 1, "state": state, "since": "2026-12-01T12:00:00Z"}  # fmt: skip


MEASURED = {
    "check": "recall",
    "revision": "v1-bbbbb",
    "value": 0.99412,
    "limit": ">= 0.95",
    "result": "Successful",
    "at": "2026-12-01T12:00:12Z",
}
INDEX: dict[str, Any] = {
    "metadata": {"name": "products", "namespace": "shop"},
    "spec": {
        "rollout": {
            "steps": [{"setWeight": 50}, {"pause": {"duration": "60s"}}],
            "analysis": {"interval": "30s", "failureLimit": 1, "inconclusiveLimit": 3},
        }
    },
    "status": {
        "phase": "Progressing",
        "stableRevision": "v1-aaaaa",
        "canaryRevision": "v1-bbbbb",
        "canaryWeight": 50,
        "recall": 0.97321,
        "revisions": [rev("v1-aaaaa", 64, "Stable"), rev("v1-bbbbb", 128, "Canary")],
        "rollout": {
            "revision": "v1-bbbbb",
            "startedAt": "2026-12-01T11:59:00Z",
            "step": 1,
            "stepStartedAt": "2026-12-01T12:00:00Z",
            "weight": 50,
            "nextAnalysisAt": "2026-12-01T12:00:42Z",
        },
        "analysis": {
            "failures": 0,
            "inconclusive": 1,
            "lastMeasurements": [MEASURED],
        },
        "builds": [{"version": "v1", "outcome": "Succeeded", "vectors": 20000, "recall": 0.99}],
    },
}


def test_status_shows_revisions_step_and_analysis_against_limits() -> None:
    text = status_view(INDEX, NOW)
    assert "Stable:     v1-aaaaa  efSearch 64  workers 1  recall 0.9732" in text
    assert "Canary:     v1-bbbbb  efSearch 128  workers 1  weight 50% (steps ask 50%)" in text
    assert "Step:       2/2  pause 60s, 30s left" in text
    assert "next in 12s; failures 0/1, inconclusive 1/3" in text
    assert "recall  v1-bbbbb  0.9941  >= 0.95  Successful  18s ago" in text


def test_status_of_an_index_without_a_rollout_is_short() -> None:
    status = {"phase": "Serving", "stableRevision": "v1-aaaaa"}
    idle = {**INDEX, "spec": {}, "status": {**status, "revisions": [rev("v1-aaaaa", 64, "Stable")]}}
    text = status_view(idle, NOW)
    assert "Canary" not in text and "Analysis" not in text and "Phase:      Serving" in text


def test_history_lists_revisions_and_builds() -> None:
    text = history_view(INDEX, NOW)
    assert "v1-bbbbb  v1       128       Canary  30s ago" in text
    assert "Builds:" in text and "Succeeded" in text


def test_tables_pad_columns() -> None:
    assert table([["A", "BB"], ["CCC", "D"]]) == "A    BB\nCCC  D"


def test_status_shows_the_retraining_triggers() -> None:
    spec = {"rebuild": {"schedule": "0 3 * * *", "onDrift": {"threshold": 1.5, "for": "5m"}}}
    status = {
        "phase": "Progressing",
        "stableRevision": "v1-aaaaa",
        "revisions": [rev("v1-aaaaa", 64, "Stable")],
        "nextScheduledRebuild": "2026-12-02T03:00:00Z",
        "drift": {"revision": "v1-aaaaa", "result": "Above", "value": 2.345,
                  "at": "2026-12-01T12:00:00Z", "aboveSince": "2026-12-01T11:55:00Z"},
        "lastRebuild": {"reason": "Drift", "at": "2026-12-01T12:00:00Z", "version": "v2",
                        "token": "drift@2026-12-01T12:00:00Z", "value": 2.345},
    }  # fmt: skip
    text = status_view({**INDEX, "spec": spec, "status": status}, NOW)
    assert "Schedule:   '0 3 * * *' (UTC), next in 14h59m" in text
    assert "Drift:      2.345 (Above since 5m30s ago), threshold 1.5 for 5m" in text
    assert "Rebuilt:    Drift 30s ago -> version v2, value 2.345" in text
    assert "Schedule" not in status_view(INDEX, NOW)


MODEL: dict[str, Any] = {
    "kind": "ClusterModel",
    "metadata": {"name": "segments", "namespace": "demo"},
    "spec": {},
    "status": {
        "phase": "Serving",
        "stableRevision": "v2-ccccc",
        "clusters": 4,
        "silhouette": 0.712345,
        "inertia": 4321.5,
        "revisions": [
            {"revision": "v2-ccccc", "version": "v2", "workers": 1, "state": "Stable",
             "since": "2026-12-01T12:00:00Z"},
        ],
        "builds": [
            {"version": "v2", "outcome": "Succeeded", "vectors": 20000, "clusters": 4,
             "silhouette": 0.712345, "inertia": 4321.5},
        ],
    },
}  # fmt: skip


def test_a_models_status_shows_k_and_silhouette_not_efsearch() -> None:
    text = status_view(MODEL, NOW)
    assert "Name:       ClusterModel segments  (namespace demo)" in text
    assert "Stable:     v2-ccccc  workers 1  k 4  silhouette 0.7123  inertia 4321.5" in text
    assert "efSearch" not in text and "recall" not in text


def test_a_models_history_has_its_own_columns() -> None:
    text = history_view(MODEL, NOW)
    assert "REVISION  VERSION  STATE   SINCE    MESSAGE" in text
    assert "VERSION  OUTCOME    VECTORS  K  SILHOUETTE  INERTIA  FINISHED  MESSAGE" in text
    assert "v2       Succeeded  20000    4  0.712345    4321.5   -" in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("products", ("knnindex", "products")),
        ("knn/products", ("knnindex", "products")),
        ("KnnIndex/products", ("knnindex", "products")),
        ("clm/segments", ("clustermodel", "segments")),
        ("clustermodels.knn.dev/segments", ("clustermodel", "segments")),
    ],
)
def test_targets_are_spelled_as_kubectl_spells_them(text: str, expected: tuple[str, str]) -> None:
    assert target(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("deployment/products", "'deployment' is not a KnnIndex or ClusterModel type"),
        ("clm/", "'clm/' names no object"),
    ],
)
def test_other_types_and_no_name_are_refused_naming_them(text: str, message: str) -> None:
    with pytest.raises(SystemExit) as refused:
        target(text)
    assert message in str(refused.value) and "clm/NAME" in str(refused.value)
