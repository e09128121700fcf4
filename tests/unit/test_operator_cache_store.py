"""The operator's caches (operator/knn_operator/caches): the store's ordering and
relist rules, and the slim entries. The informers and the caches against a real
API server are in tests/controlplane/test_operator_caches.py."""

from __future__ import annotations

from typing import Any

from knn_contracts import api
from knn_operator.caches import slim
from knn_operator.caches.kind import KindCaches
from knn_operator.caches.store import Store, older
from knn_operator.kinds.knnindex import KNN_INDEX
from knn_operator.reconciler import changed_meanwhile

Obj = dict[str, Any]


def job(name: str, owner: str, rv: int, ns: str = "a", **status: Any) -> Obj:
    return slim.job(
        {
            "kind": "Job",
            "metadata": {
                "name": name,
                "namespace": ns,
                "resourceVersion": str(rv),
                "labels": {api.LABEL_INDEX: owner, api.LABEL_VERSION: "v1"},
                "managedFields": [{"manager": "x"}],
            },
            "spec": {"template": {"spec": {"containers": [{"name": "build"}]}}},
            "status": status,
        }
    )


def jobs() -> Store:
    return KindCaches.of(KNN_INDEX).jobs


def test_resource_versions_compare_as_integers_and_opaque_ones_never_count_as_older() -> None:
    assert older("9", "10") and not older("10", "9") and not older("10", "10")
    assert not older("abc", "10") and not older(None, "10") and not older("10", None)


def test_a_new_or_changed_entry_names_its_owner_and_an_identical_one_does_not() -> None:
    s = jobs()
    assert s.put(job("j1", "idx", 5)) == ("a", "idx")
    assert s.put(job("j1", "idx", 5)) is None  # the watch's echo of a stored write
    assert s.put(job("j1", "idx", 6, conditions=[{"type": "Complete"}])) == ("a", "idx")
    assert s.of(("a", "idx"))[0]["status"]["conditions"] == [{"type": "Complete"}]


def test_an_older_event_never_replaces_a_newer_entry() -> None:
    s = jobs()
    s.put(job("j1", "idx", 7, conditions=[{"type": "Complete"}]))
    assert s.put(job("j1", "idx", 6)) is None
    assert s.of(("a", "idx"))[0]["metadata"]["resourceVersion"] == "7"


def test_a_deleted_object_leaves_the_store_and_its_owner_with_it() -> None:
    s = jobs()
    s.put(job("j1", "idx", 5))
    assert s.remove(job("j1", "idx", 8)) == ("a", "idx")
    assert s.of(("a", "idx")) == [] and list(s.owners()) == [] and len(s) == 0


def test_a_deletion_older_than_the_entry_is_ignored() -> None:
    """Deleted and made again before the watch delivered the deletion."""
    s = jobs()
    s.put(job("j1", "idx", 9))
    assert s.remove(job("j1", "idx", 8)) is None
    assert len(s) == 1


def test_objects_without_the_owner_label_are_not_kept() -> None:
    s = jobs()
    body = job("j1", "idx", 5)
    del body["metadata"]["labels"][api.LABEL_INDEX]
    assert s.put(body) is None and len(s) == 0


def test_a_relist_drops_what_it_lacks_but_keeps_writes_newer_than_itself() -> None:
    s = jobs()
    s.put(job("gone", "idx", 5))
    s.put(job("kept", "idx", 6))
    s.put(job("written-after", "other", 20))
    changed = s.replace([job("kept", "idx", 6), job("new", "third", 9)], as_of="10")
    assert changed == {("a", "idx"), ("a", "third")}
    assert {b["metadata"]["name"] for o in s.owners() for b in s.of(o)} == {
        "kept",
        "new",
        "written-after",
    }


def test_a_relist_of_one_namespace_leaves_the_others() -> None:
    s = jobs()
    s.put(job("j1", "idx", 5, ns="a"))
    s.put(job("j2", "idx", 5, ns="b"))
    assert s.replace([], as_of="10", namespace="a") == {("a", "idx")}
    assert list(s.owners()) == [("b", "idx")]


def test_slim_entries_keep_what_the_planner_reads_and_nothing_else() -> None:
    body = job("j1", "idx", 5, conditions=[{"type": "Failed", "status": "True"}], active=1)
    assert body == {
        "metadata": {
            "name": "j1",
            "namespace": "a",
            "resourceVersion": "5",
            "labels": {api.LABEL_INDEX: "idx", api.LABEL_VERSION: "v1"},
            "generation": None,
            "creationTimestamp": None,
        },
        "status": {"conditions": [{"type": "Failed", "status": "True"}]},
    }
    own = slim.owned({"kind": "KnnIndex", "metadata": {"name": "n", "managedFields": [1]}})
    assert own == {"kind": "KnnIndex", "metadata": {"name": "n"}}


def test_the_kinds_caches_route_written_objects_and_find_builder_pods_by_version() -> None:
    c = KindCaches.of(KNN_INDEX)
    c.written({"kind": "KnnIndex", "metadata": {"name": "idx", "namespace": "a", "uid": "u"}})
    c.written({"kind": "Job", **job("j1", "idx", 5)})
    c.written({"kind": "Service", "metadata": {"name": "s", "namespace": "a"}})
    assert c.object(("a", "idx")) is not None and c.keys() == [("a", "idx")]
    assert [b["metadata"]["name"] for b in c.children().jobs(("a", "idx"))] == ["j1"]
    pod: Obj = {
        "metadata": {
            "name": "p",
            "namespace": "a",
            "labels": {
                api.LABEL_INDEX: "idx",
                api.LABEL_VERSION: "v1",
                api.LABEL_COMPONENT: "builder",
            },
        }
    }
    c.builder_pods.put(slim.pod(pod))
    assert len(list(c.children().builder_pods(("a", "idx"), "v1"))) == 1
    assert list(c.children().builder_pods(("a", "idx"), "v2")) == []
    c.gone(("a", "idx"))
    assert c.object(("a", "idx")) is None


def test_writing_a_held_child_that_changed_meanwhile_asks_for_another_pass() -> None:
    c = KindCaches.of(KNN_INDEX)
    assert c.written({"kind": "Job", **job("j1", "idx", 5)}) is False  # new: what was planned
    assert c.written({"kind": "Job", **job("j1", "idx", 5)}) is False  # unchanged
    done = job("j1", "idx", 9, conditions=[{"type": "Complete", "status": "True"}])
    assert c.written({"kind": "Job", **done}) is True  # completed before the write landed
    assert c.jobs.put(job("j1", "idx", 7)) is None  # ...so its older event asks for nothing


def test_a_spec_edit_seen_in_the_status_writes_answer_asks_for_another_pass() -> None:
    planned: Obj = {
        "kind": "KnnIndex",
        "metadata": {"name": "n", "resourceVersion": "5", "generation": 1},
        "spec": {"metric": "l2"},
        "status": {"phase": "Pending"},
    }
    echo = {**planned, "metadata": {**planned["metadata"], "resourceVersion": "6"}}
    assert not changed_meanwhile(planned, {**echo, "status": {"phase": "Building"}})
    edited = {**echo, "metadata": {**echo["metadata"], "generation": 2}, "spec": {"metric": "ip"}}
    assert changed_meanwhile(planned, edited)
    assert not changed_meanwhile(planned, {})  # no answer: nothing learnt
