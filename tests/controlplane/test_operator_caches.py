"""The operator's caches against the real API server, as the chart's ClusterRole:
they follow creates, changes and deletions, a restart rebuilds them from a LIST,
and a decision planned from them is the one a fresh GET and LIST would give.

The caches run in this process (the informers of caches/kind.py on a real
client); the operator-level consequence (a deleted child is noticed) is the last
test, with the operator as a subprocess.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from knn_devtools.kubectl import Kubectl
from knn_operator.builders.common import Owner
from knn_operator.builders.job import builder_job
from knn_operator.caches import slim
from knn_operator.caches.kind import KindCaches
from knn_operator.kinds import Children, Key
from knn_operator.kinds.knnindex import KNN_INDEX, observe
from knn_operator.kube import Kube
from knn_operator.models.knnindex import KnnIndexSpec
from knn_operator.planning import plan
from knn_operator.settings import Settings

if TYPE_CHECKING:
    from tests.controlplane import operator_support as ops
else:
    import operator_support as ops

pytestmark = pytest.mark.controlplane

SETTINGS = Settings()
NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
Obj = dict[str, Any]


@pytest.fixture
def as_operator(
    kubectl: Kubectl, namespace: str, knn_crds: list[str], service_account: Any
) -> Iterator[str]:
    """A kubeconfig for Kube.connect() in this process, acting as the operator's
    ServiceAccount with the chart's ClusterRole. The namespace is emptied after the
    test (a later test's cluster-wide operator would reconcile what is left)."""
    kubectl.run("apply", "--server-side", "-f", str(ops.CLUSTER_ROLE_FILE))
    account = service_account("knn-operator", ops.ROLE_NAME, cluster_wide=True)
    yield str(account.kubeconfig)
    ops.clean_namespace(kubectl, namespace)


def _index(kubectl: Kubectl, ns: str, name: str) -> Obj:
    ops.apply(kubectl, ns, ops.knn_index(name))
    body = ops.get(kubectl, "knn", name, ns)
    assert body is not None
    return body


def _job_for(kubectl: Kubectl, ns: str, index: Obj) -> str:
    """The builder Job the operator would make for `index`, created as admin."""
    meta = index["metadata"]
    owner = Owner(meta["name"], ns, meta["uid"])
    spec = KnnIndexSpec.model_validate(index["spec"])
    manifest = builder_job(owner, spec, ops.expected_version({}), SETTINGS)
    kubectl.run("apply", "--server-side", "-f", "-", stdin=json.dumps(manifest))
    return str(manifest["metadata"]["name"])


def _fresh_children(kubectl: Kubectl, ns: str) -> Children:
    """Children as a LIST of each collection now shows them (the reference)."""
    fresh = KindCaches.of(KNN_INDEX)
    for kind, store, shape in (
        ("jobs", fresh.jobs, slim.job),
        ("deployments", fresh.deployments, slim.deployment),
        ("pods", fresh.builder_pods, slim.pod),
    ):
        store.replace([shape(o) for o in ops.items(kubectl, kind, ns)])
    return fresh.children()


def _names(children: Children, key: Key) -> tuple[list[str], list[str]]:
    def names(bodies: Any) -> list[str]:
        return sorted(b["metadata"]["name"] for b in bodies)

    return names(children.jobs(key)), names(children.builder_pods(key, ops.expected_version({})))


async def _until(what: str, check: Callable[[], object]) -> None:
    try:
        async with asyncio.timeout(20):
            # The test looks at the caches from outside, as the reconciler reads them.
            while not check():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def _started(kube: Kube, ns: str, changed: list[Key]) -> tuple[KindCaches, list[Any]]:
    cache = KindCaches.of(KNN_INDEX)
    tasks = [asyncio.create_task(i.run()) for i in cache.informers(kube, (ns,), changed.append)]
    await asyncio.wait_for(cache.ready(), 20)
    return cache, tasks


async def _stopped(tasks: list[Any]) -> None:
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _cmd(kubectl: Kubectl, *args: str) -> Any:
    return asyncio.to_thread(kubectl.run, *args)


def test_caches_follow_the_api_and_a_restart_rebuilds_them(
    kubectl: Kubectl, namespace: str, as_operator: str
) -> None:
    ns = namespace
    a, b, c = (_index(kubectl, ns, n) for n in ("a", "b", "c"))
    job_a = _job_for(kubectl, ns, a)  # exists before the caches start: comes from the LIST

    async def story() -> None:
        kube = await Kube.connect(as_operator)
        changed: list[Key] = []
        try:
            cache, tasks = await _started(kube, ns, changed)
            assert _names(cache.children(), (ns, "a")) == ([job_a], [])

            # A new Job, its builder Pod and its completion arrive by the watch.
            job_b = await asyncio.to_thread(_job_for, kubectl, ns, b)
            await _until("Job b cached", lambda: _names(cache.children(), (ns, "b"))[0] != [])
            assert (ns, "b") in changed
            await asyncio.to_thread(
                ops.complete_build, kubectl, ns, job_b, ops.summary(ops.expected_version({}))
            )

            def complete() -> bool:
                jobs = cache.children().jobs((ns, "b"))
                conds = [c for j in jobs for c in j["status"].get("conditions") or []]
                return any(c["type"] == "Complete" for c in conds)

            await _until("Job b Complete in the cache", complete)
            await _until("b's builder pod cached", lambda: _names(cache.children(), (ns, "b"))[1])

            # A planning decision from the caches equals one from a fresh GET and LIST.
            fresh = await asyncio.to_thread(_fresh_children, kubectl, ns)
            for idx in (a, b):
                key = (ns, idx["metadata"]["name"])
                got = await asyncio.to_thread(ops.get, kubectl, "knn", key[1], ns)
                assert got is not None
                cache.observed(got)
                body = cache.object(key)
                assert body is not None
                assert _names(cache.children(), key) == _names(fresh, key)
                from_cache = plan(observe(body, cache.children()), SETTINGS, NOW)
                from_api = plan(observe(got, fresh), SETTINGS, NOW)
                assert from_cache == from_api
            assert plan(observe(b, cache.children()), SETTINGS, NOW).status.builds[0].outcome == (
                "Succeeded"
            )

            # Deleted objects leave the cache, their owner's entry with them.
            await _cmd(kubectl, "delete", "job", job_b, "-n", ns, "--wait=false")
            await _cmd(kubectl, "delete", "pods", "-n", ns, "-l", "knn.dev/index=b")
            await _until(
                "b's Job and pod gone", lambda: _names(cache.children(), (ns, "b")) == ([], [])
            )
            assert (ns, "b") not in set(cache.jobs.owners()) | set(cache.builder_pods.owners())
            await _stopped(tasks)

            # While no cache runs: a's Job goes, c gets one. A restart lists afresh.
            await _cmd(kubectl, "delete", "job", job_a, "-n", ns, "--wait=false")
            job_c = await asyncio.to_thread(_job_for, kubectl, ns, c)
            cache, tasks = await _started(kube, ns, changed)
            assert _names(cache.children(), (ns, "a")) == ([], [])
            assert _names(cache.children(), (ns, "c")) == ([job_c], [])
            await _stopped(tasks)
        finally:
            await kube.close()

    asyncio.run(story())


def test_a_deleted_builder_job_is_noticed_and_made_again(
    kubectl: Kubectl, namespace: str, start_operator: ops.OperatorStarter
) -> None:
    """A cache that kept a deleted Job would leave the index without one for good
    (the resync re-reads the index, not its children)."""
    operator = start_operator()
    ns, name = namespace, "products"
    version = ops.expected_version({})
    ops.apply(kubectl, ns, ops.knn_index(name))
    first = ops.wait_job(kubectl, ns, name, version, operator)
    kubectl.run("delete", "job", first["metadata"]["name"], "-n", ns, "--wait=false")
    ops.wait_for(
        "the builder Job made again",
        lambda: (
            (j := ops.get(kubectl, "job", first["metadata"]["name"], ns)) is not None
            and j["metadata"]["uid"] != first["metadata"]["uid"]
        ),
        diagnostics=operator.log_tail,
    )
    # One BuildStarted for the build, none for the phase it announced.
    reasons = [e["reason"] for e in ops.events(kubectl, ns, name)]
    assert "BuildStarted" in reasons and "Building" not in reasons, reasons
