"""`knn-serve --workers 2`: the workers share one copy of the index (the supervisor
loads it and forks them), and answer as one worker does."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

if TYPE_CHECKING:  # mypy resolves modules from the repository root...
    from tests.dataplane import servers as sv
else:  # ...pytest puts this directory (it has no __init__.py) on sys.path.
    import servers as sv

N, DIM = 20_000, 128


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> sv.Artifact:
    data = np.random.default_rng(3).standard_normal((N, DIM), dtype=np.float32)
    return sv.build_artifact(tmp_path_factory.mktemp("workers"), data, "l2", probe_queries=100)


def smaps_kib(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, value = line.partition(":")
        out[name] = int(value.split()[0])
    return out


def test_workers_share_the_index_and_answer_alike(artifact: sv.Artifact, tmp_path: Path) -> None:
    index_kib = (artifact.directory / "index.bin").stat().st_size // 1024
    queries = np.random.default_rng(4).standard_normal((20, DIM), dtype=np.float32)
    with sv.serve(artifact.directory, tmp_path / "one") as one, one.client() as c:
        alone = [c.post("/v1/query", json={"vector": q.tolist(), "k": 5}).json() for q in queries]
    with sv.serve(artifact.directory, tmp_path / "two", args=["--workers", "2"]) as two:
        workers = [p for p, cmd in sv.child_processes(two.child.pid).items() if "--workers" in cmd]
        assert len(workers) == 2
        for pid in workers:
            # Pages written before the fork and shared since: the index, loaded once.
            shared = smaps_kib(pid)["Shared_Dirty"]
            assert shared >= 0.9 * index_kib, f"worker {pid}: {shared} KiB shared of {index_kib}"
        together = []
        for q in queries:
            with two.client() as c:  # new connections: the kernel spreads them over both
                together.append(c.post("/v1/query", json={"vector": q.tolist(), "k": 5}).json())
    assert together == alone
