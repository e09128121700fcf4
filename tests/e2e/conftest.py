"""Fixtures for the end-to-end tier: a real local cluster (knn_devtools.cluster) that
the tests start themselves, with their own state directory, ports and address
ranges (so they never touch a `make up` cluster's `.local`).

Only one node runs per machine (kube-proxy and the kubelet own host-wide iptables
chains): if `make up` / `make demo` left a cluster running, the fixture fails with a
message naming it and how to stop it. Missing tools are built first; if they cannot
be, every test errors with the reason: these tests never skip.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from knn_devtools.cluster import FULL_STACK, Cluster, host_snapshot
from knn_devtools.kubectl import Kubectl
from knn_devtools.tools import REPO_ROOT

if TYPE_CHECKING:  # mypy resolves modules from the repository root...
    from tests.e2e.e2e_support import (
        e2e_config,
        host_diff,
        wait_products_ready,
        write_products_dataset,
    )
else:  # ...pytest puts this directory on sys.path.
    from e2e_support import e2e_config, host_diff, wait_products_ready, write_products_dataset


def _short_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: unix socket paths under the state directory must stay
    # short (ClusterConfig checks), and pytest's can be long.
    path = Path(tempfile.mkdtemp(prefix="knn-e2e-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A fresh directory with a short path, for a cluster's state."""
    yield from _short_dir()


@pytest.fixture(scope="session")
def cluster(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """One cluster (control plane, node, DNS, storage, the product's images and the
    operator running in it) for the session."""
    state = Path(tempfile.mkdtemp(prefix="knn-e2e-"))
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")

    def echo(line: str) -> None:
        if reporter is not None:
            reporter.write_line(f"[cluster] {line}")

    config = e2e_config(state, addons=FULL_STACK)
    before = host_snapshot(config)
    try:
        with Cluster(config, echo=echo) as c:
            yield c
        # The whole stack (BuildKit, the operator, every pod) leaves nothing behind
        # either; test_cleanup.py checks the node alone in detail.
        left = host_diff(before, host_snapshot(config))
        if left:
            pytest.fail(f"the e2e cluster left this on the host: {left}", pytrace=False)
    finally:
        # The components' logs outlive the cluster, in pytest's temporary directory. A
        # cluster refused before it started has none: its refusal must stay the error.
        if (state / "logs").is_dir():
            logs = tmp_path_factory.mktemp("e2e-cluster-logs", numbered=True)
            shutil.copytree(state / "logs", logs, dirs_exist_ok=True)
            echo(f"logs kept in {logs}")
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def kubectl(cluster: Cluster) -> Kubectl:
    return cluster.kubectl()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The first test pays for the cluster's start, which may build the product's
    # images (minutes on a fresh machine): a longer limit than the other tiers'.
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.timeout(1800))


@pytest.fixture(scope="module")
def products(cluster: Cluster, kubectl: Kubectl) -> Iterator[np.ndarray[Any, Any]]:
    """demo/products Ready (examples/local-cluster/products.yaml on its dataset) for one
    module; deleted after it."""
    data = write_products_dataset(cluster)
    kubectl.run("apply", "-f", str(REPO_ROOT / "examples" / "local-cluster" / "products.yaml"))
    wait_products_ready(kubectl)
    yield data
    kubectl.run("-n", "demo", "delete", "knn", "products", "--wait=true", "--timeout=120s")
