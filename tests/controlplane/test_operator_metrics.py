"""The operator's own observability: /metrics, the liveness endpoint, a clean stop."""

from __future__ import annotations

import json
import urllib.request
from typing import TYPE_CHECKING

import pytest
from knn_devtools.kubectl import Kubectl
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from tests.controlplane import operator_support as ops
else:
    import operator_support as ops

pytestmark = pytest.mark.controlplane


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _phases(operator: ops.OperatorProcess) -> dict[str, float]:
    return {
        dict(labels)["phase"]: value
        for (name, labels), value in _samples(operator.metrics()).items()
        if name == "knn_operator_objects" and dict(labels).get("kind") == "KnnIndex"
    }


def test_metrics_liveness_and_clean_stop(
    kubectl: Kubectl, namespace: str, start_operator: ops.OperatorStarter
) -> None:
    operator = start_operator()
    ns = namespace
    version = ops.expected_version({})
    ops.apply(
        kubectl, ns, ops.knn_index("serving"), ops.knn_index("building"), ops.knn_index("failed")
    )
    ops.build_and_serve(kubectl, ns, "serving", version, operator)
    ops.wait_job(kubectl, ns, "failed", version, operator)
    ops.fail_build(kubectl, ns, f"failed-build-{version}", "no such object: s3://vectors")
    ops.wait_phase(kubectl, ns, "failed", "Failed", operator)
    ops.wait_phase(kubectl, ns, "building", "Building", operator)

    phases = ops.wait_for(
        "knn_operator_objects by phase",
        lambda: (
            p
            if (p := _phases(operator)).get("Serving") == 1
            and p.get("Building") == 1
            and p.get("Failed") == 1
            else None
        ),
        diagnostics=lambda: operator.metrics(),
    )
    assert set(phases) == {
        "Pending",
        "Building",
        "Progressing",
        "Serving",
        "Degraded",
        "RolledBack",
        "Failed",
    }
    assert sum(phases.values()) == 3

    samples = _samples(operator.metrics())
    kind = (("kind", "KnnIndex"),)
    count = samples[("knn_operator_reconcile_duration_seconds_count", kind)]
    total = samples[("knn_operator_reconcile_duration_seconds_sum", kind)]
    assert count >= 6, count
    assert 0 < total / count < 1.0, f"mean reconcile {total / count:.3f}s"
    buckets = {
        dict(labels)["le"]: value
        for (name, labels), value in samples.items()
        if name == "knn_operator_reconcile_duration_seconds_bucket"
    }
    assert buckets["+Inf"] == count
    assert samples.get(("knn_operator_reconcile_errors_total", kind), 0.0) == 0.0

    # A deleted index leaves the gauge.
    kubectl.run("delete", "knn", "serving", "-n", ns)
    ops.wait_for(
        "Serving gauge back to 0",
        lambda: _phases(operator).get("Serving") == 0,
        diagnostics=lambda: operator.metrics(),
    )

    # kopf's liveness endpoint: 200 with a JSON body.
    url = f"http://127.0.0.1:{operator.liveness_port}/healthz"
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        json.loads(response.read())

    # SIGTERM: kopf's clean shutdown, exit status 0, well before the SIGKILL fallback.
    with ops.timed() as elapsed:
        code = operator.stop(timeout=20)
    assert code == 0, operator.log_tail()
    assert elapsed() < 10, f"stopping took {elapsed():.1f}s"
