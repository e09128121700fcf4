"""Fixtures for tests against a real etcd + kube-apiserver, driven with the real kubectl.

Missing binaries are built by hack/build-tools.sh once, after collection and
before any test starts (so the build is not cut short by a test timeout). If
that fails, or KNN_NO_BUILD=1, every control-plane test errors with the reason:
they never skip.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from knn_devtools.controlplane import ControlPlane
from knn_devtools.crds import install_crds
from knn_devtools.kubectl import Kubectl
from knn_devtools.rbac import RoleKind, ServiceAccountCredentials, service_account_with_role
from knn_devtools.thirdparty import third_party_crds
from knn_devtools.tools import ToolError, ensure_tools

if TYPE_CHECKING:  # mypy resolves modules from the repository root...
    from tests.controlplane import operator_support as ops
else:  # ...pytest puts this directory on sys.path.
    import operator_support as ops

FIXTURES = Path(__file__).parent / "fixtures"

_STARTUP = pytest.StashKey[float]()
_TOOLS_ERROR = pytest.StashKey[ToolError]()
_ALL_TOOLS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "helm",
    "kubeconform",
)

CRDInstaller = Callable[..., list[str]]
ServiceAccountFactory = Callable[..., ServiceAccountCredentials]


@pytest.hookimpl(trylast=True)  # after -m/-k deselection
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not any(item.get_closest_marker("controlplane") for item in items):
        return
    try:
        ensure_tools(*_ALL_TOOLS)
    except ToolError as err:
        config.stash[_TOOLS_ERROR] = err


@pytest.fixture(autouse=True)
def _tools_built(pytestconfig: pytest.Config) -> None:
    err = pytestconfig.stash.get(_TOOLS_ERROR, None)
    if err is not None:
        # A fresh exception per test: re-raising one object would pile up tracebacks.
        raise ToolError(str(err))


@pytest.fixture(scope="session")
def control_plane(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[ControlPlane]:
    """One etcd + kube-apiserver for the session; logs are kept in pytest's tmp dir."""
    log_dir = tmp_path_factory.mktemp("controlplane-logs", numbered=True)
    with ControlPlane(log_dir=log_dir, echo=None) as cp:
        pytestconfig.stash[_STARTUP] = cp.startup_seconds
        reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"\ncontrol plane ready in {cp.startup_seconds:.2f}s "
                f"(etcd {cp.timings.etcd:.2f}s, kube-apiserver {cp.timings.apiserver:.2f}s); "
                f"logs: {log_dir}"
            )
        yield cp


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    seconds = terminalreporter.config.stash.get(_STARTUP, None)
    if seconds is not None:
        terminalreporter.write_line(f"control plane startup: {seconds:.2f}s")


@pytest.fixture(scope="session")
def kubectl(control_plane: ControlPlane) -> Kubectl:
    """kubectl as cluster admin (system:masters)."""
    return control_plane.kubectl()


@pytest.fixture
def namespace(kubectl: Kubectl, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace enforcing the restricted Pod Security profile."""
    name = ops.make_namespace(kubectl, request.node.name)
    yield name
    # Without the namespace controller the namespace stays Terminating; it costs
    # nothing, and etcd's data goes away with the session.
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def crd_installer(kubectl: Kubectl) -> CRDInstaller:
    """``install(path, ...)`` applies CRD files/directories once per session and waits
    for Established; returns the CRD names."""
    installed: dict[tuple[Path, ...], list[str]] = {}

    def install(*paths: Path, timeout: float = 60.0) -> list[str]:
        key = tuple(p.resolve() for p in paths)
        if key not in installed:
            installed[key] = install_crds(kubectl, key, timeout=timeout)
        return installed[key]

    return install


@pytest.fixture(scope="session")
def test_crds(crd_installer: CRDInstaller) -> list[str]:
    """The Widget CRD of tests/controlplane/fixtures (CEL rule, status subresource)."""
    return crd_installer(FIXTURES / "widgets.crd.yaml")


@pytest.fixture(scope="session")
def thirdparty_crds(crd_installer: CRDInstaller) -> list[str]:
    """HTTPRoute, VirtualService, DestinationRule, ServiceMonitor, PodMonitor,
    PrometheusRule at their pinned versions, installed and Established."""
    return crd_installer(*third_party_crds(), timeout=120.0)


@pytest.fixture
def service_account(kubectl: Kubectl, namespace: str, tmp_path: Path) -> ServiceAccountFactory:
    """``make(name, role, role_kind=..., cluster_wide=...)`` creates a ServiceAccount in
    the test's namespace bound to exactly that role, with a kubeconfig acting as it."""

    def make(
        name: str, role: str, *, role_kind: RoleKind = "ClusterRole", cluster_wide: bool = False
    ) -> ServiceAccountCredentials:
        return service_account_with_role(
            kubectl,
            namespace=namespace,
            name=name,
            role=role,
            role_kind=role_kind,
            cluster_wide=cluster_wide,
            kubeconfig_path=tmp_path / f"{name}.kubeconfig",
        )

    return make


# -- knn-operator tests (test_operator_*.py): the real operator with the chart's RBAC --


@pytest.fixture(scope="session")
def knn_crds(crd_installer: CRDInstaller) -> list[str]:
    """crds/ (knnindexes.yaml, clustermodels.yaml), installed once and Established:
    the operator watches both kinds."""
    return crd_installer(*ops.CRD_FILES)


@pytest.fixture
def start_operator(
    kubectl: Kubectl,
    namespace: str,
    knn_crds: list[str],
    service_account: ServiceAccountFactory,
    tmp_path: Path,
) -> Iterator[ops.OperatorStarter]:
    """``start(watch=(), role_kind="ClusterRole", resync_seconds=...)`` runs
    `python -m knn_operator` as ServiceAccount ``knn-operator`` of the test's
    namespace, bound to exactly rbac/clusterrole.yaml (cluster-wide) or, with
    ``role_kind="Role"``, to rbac/role.yaml in the test's namespace (then pass
    ``watch=(namespace,)``). Stopped, and the namespace emptied, after the test."""
    started: list[ops.OperatorProcess] = []

    def start(
        *,
        watch: tuple[str, ...] = (),
        role_kind: RoleKind = "ClusterRole",
        resync_seconds: float = ops.DEFAULT_RESYNC_SECONDS,
    ) -> ops.OperatorProcess:
        if role_kind == "Role":
            role = ops.ROLE_FILE.read_text().replace("NAMESPACE", namespace)
            kubectl.apply_manifest(role)
            account = service_account("knn-operator", ops.ROLE_NAME, role_kind="Role")
        else:
            kubectl.run("apply", "--server-side", "-f", str(ops.CLUSTER_ROLE_FILE))
            account = service_account("knn-operator", ops.ROLE_NAME, cluster_wide=True)
        operator = ops.OperatorProcess(
            account.kubeconfig,
            tmp_path / f"operator-{len(started)}.log",
            namespaces=watch,
            resync_seconds=resync_seconds,
        )
        started.append(operator)
        operator.start()
        return operator

    yield start
    for operator in started:
        operator.stop()
    ops.clean_namespace(kubectl, namespace)


@pytest.fixture
def extra_namespaces(kubectl: Kubectl) -> Iterator[list[str]]:
    """``extra_namespaces.append(ops.make_namespace(kubectl, "b"))``: emptied after the test."""
    made: list[str] = []
    yield made
    for ns in made:
        ops.clean_namespace(kubectl, ns)
        kubectl.run("delete", "namespace", ns, "--wait=false", check=False)
