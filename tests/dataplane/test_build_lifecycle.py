"""Versions over time: an artifact is immutable, a retried build reuses it, a
changed input never overwrites it, and a build killed half-way leaves no
artifact under the version's name, and its staging directory is cleared by the
next build of that version."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from knn_contracts.artifact import BuildExit, BuildSummary
from knn_serving import artifact

if TYPE_CHECKING:  # mypy resolves modules from the repository root...
    from tests.dataplane import datasets as ds
else:  # ...pytest puts this directory (it has no __init__.py) on sys.path.
    import datasets as ds

KNN_BUILD = Path(sys.executable).parent / "knn-build"
N, D = 1500, 12


def knn_build(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KNN_BUILD), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ.copy(),
        check=False,
    )


def state(directory: Path) -> dict[str, tuple[str, int]]:
    """sha256 and modification time of every file: a rewrite changes the mtime."""
    return {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(directory.iterdir())
    }


def base_args(tmp: Path) -> list[str | Path]:
    source = tmp / "data.npy"
    if not source.exists():
        ds.write_npy(source, ds.gaussian(N, D, seed=41))
    return [
        "--source", source, "--metric", "l2", "--m", "10", "--ef-construction", "50",
        "--ef-search", "40", "--k", "10", "--probe-queries", "100", "--min-recall", "0.8",
        "--out", tmp / "out",
    ]  # fmt: skip


def succeed(*args: str | Path) -> tuple[BuildSummary, str]:
    run = knn_build(*args)
    assert run.returncode == 0, run.stderr
    return BuildSummary.model_validate_json(run.stdout), run.stderr


def test_same_inputs_and_version_reuse_the_artifact(tmp_path: Path) -> None:
    first, _ = succeed(*base_args(tmp_path), "--version", "v1")
    directory = tmp_path / "out" / "v1"
    before = state(directory)
    time.sleep(0.01)  # so a rewrite would show in st_mtime_ns

    again, stderr = succeed(*base_args(tmp_path), "--version", "v1")
    assert "already exists for these inputs; reusing it" in stderr
    assert "building HNSW" not in stderr
    assert again.outcome == "Succeeded"
    assert (again.version, again.artifact, again.sha256) == (
        first.version,
        first.artifact,
        first.sha256,
    )
    assert again.sha256 == hashlib.sha256((directory / "manifest.json").read_bytes()).hexdigest()
    assert (again.vectors, again.recall) == (first.vectors, first.recall)
    assert state(directory) == before
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["v1"]


def change_data(tmp: Path) -> list[str]:
    # Same path, other bytes: the source digest tells them apart.
    ds.write_npy(tmp / "data.npy", ds.gaussian(N, D, seed=42))
    return []


@pytest.mark.parametrize(
    ("change", "difference"),
    [
        (change_data, "source sha256"),
        (lambda tmp: ["--metric", "cosine"], "metric l2 != cosine"),
        (lambda tmp: ["--m", "12"], "m, efConstruction (10, 50) != (12, 50)"),
        (lambda tmp: ["--probe-queries", "120"], "probe queries 100 != 120"),
        (lambda tmp: ["--seed", "7"], "seed 42 != 7"),
        (lambda tmp: ["--k", "5"], "k 10 != 5"),
        (
            lambda tmp: ["--ids", str(ds.write_ids(tmp / "ids.txt", ds.str_ids(N)))],
            "ids None != ",
        ),
    ],
    ids=["data", "metric", "m", "probes", "seed", "k", "ids"],
)
def test_same_version_with_other_inputs_is_refused(
    tmp_path: Path, change: Callable[[Path], list[str]], difference: str
) -> None:
    succeed(*base_args(tmp_path), "--version", "v1")
    directory = tmp_path / "out" / "v1"
    before = state(directory)
    extra = change(tmp_path)
    # argparse keeps the last of a repeated option, so extra args override the base ones.
    run = knn_build(*base_args(tmp_path), *extra, "--version", "v1", "--log-level", "WARNING")
    assert run.returncode == 3, run.stderr
    (line,) = run.stderr.splitlines()
    assert line.startswith(f"knn-build: error: {directory}: already exists with other inputs (")
    assert difference in line
    assert line.endswith("artifacts are immutable, choose another --version")
    summary = BuildSummary.model_validate_json(run.stdout)
    assert summary.outcome == "Failed"
    assert summary.version == "v1"
    assert state(directory) == before
    assert artifact.verify(directory).validation.k == 10


def test_default_versions_follow_the_inputs(tmp_path: Path) -> None:
    a, _ = succeed(*base_args(tmp_path))
    b, stderr = succeed(*base_args(tmp_path))
    assert a.version == b.version
    assert a.sha256 == b.sha256
    assert "reusing it" in stderr
    # Any input the reuse check compares yields another default version, never exit 3.
    c, _ = succeed(*base_args(tmp_path), "--m", "12")
    d, _ = succeed(*base_args(tmp_path), "--metric", "ip")
    f, _ = succeed(*base_args(tmp_path), "--seed", "7")  # other probe rows held out
    versions = {a.version, c.version, d.version, f.version}
    assert len(versions) == 4
    assert {p.name for p in (tmp_path / "out").iterdir()} == versions
    # efSearch is a serving parameter, not part of the build identity.
    e, stderr = succeed(*base_args(tmp_path), "--ef-search", "60")
    assert e.version == a.version and "reusing it" in stderr


def test_another_ef_search_reuses_the_artifact_and_is_gated_on_its_curve(
    tmp_path: Path,
) -> None:
    """After a failed gate, raising efSearch needs no rebuild; lowering it below
    what reaches --min-recall fails the gate from the recorded curve."""
    args = [*base_args(tmp_path), "--min-recall", "0.95", "--version", "v1"]
    first, _ = succeed(*args)
    directory = tmp_path / "out" / "v1"
    before = state(directory)
    curve = artifact.verify(directory).validation.curve
    low = next(p for p in curve if p.recall < 0.95)
    run = knn_build(*args, "--ef-search", str(low.ef_search))
    assert run.returncode == BuildExit.RECALL_TOO_LOW, run.stderr
    assert f"recall {low.recall:.4f} at efSearch {low.ef_search}" in run.stderr
    assert "building HNSW" not in run.stderr
    high = next(p for p in curve if p.recall >= 0.95 and p.ef_search != 40)
    again, stderr = succeed(*args, "--ef-search", str(high.ef_search))
    assert "reusing it" in stderr and "building HNSW" not in stderr
    assert (again.ef_search, again.recall) == (high.ef_search, high.recall)
    assert again.sha256 == first.sha256
    assert state(directory) == before


def test_a_corrupt_existing_artifact_is_refused_not_replaced(tmp_path: Path) -> None:
    succeed(*base_args(tmp_path), "--version", "v1")
    directory = tmp_path / "out" / "v1"
    ids = directory / "ids.npy"
    ids.write_bytes(ids.read_bytes()[:-8] + b"\x00" * 8)
    before = state(directory)
    run = knn_build(*base_args(tmp_path), "--version", "v1", "--log-level", "WARNING")
    assert run.returncode == 3
    (line,) = run.stderr.splitlines()
    assert f"{ids}: sha256 mismatch" in line
    assert "the artifact is corrupt" in line
    assert state(directory) == before


def test_out_that_is_a_file_is_a_storage_error(tmp_path: Path) -> None:
    args = base_args(tmp_path)
    (tmp_path / "out").write_text("not a directory")
    run = knn_build(*args, "--log-level", "WARNING")
    assert run.returncode == 3
    (line,) = run.stderr.splitlines()
    assert line.startswith("knn-build: error: storage error: ")
    assert str(tmp_path / "out") in line
    assert (tmp_path / "out").read_text() == "not a directory"


def leave_staging(out: Path, version: str) -> Path:
    """What a build SIGKILLed while writing its files leaves behind: the real
    staging_dir, with the process killed inside it."""
    code = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from knn_serving import artifact\n"
        "with artifact.staging_dir(Path(sys.argv[1]), sys.argv[2]) as stage:\n"
        "    (stage / 'index.bin').write_bytes(b'half an index')\n"
        "    print(stage, flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(out), version],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == -signal.SIGKILL, run.stderr
    stage = Path(run.stdout.strip())
    assert stage.parent == out and (stage / "index.bin").is_file()
    return stage


def test_killed_during_add_items_leaves_no_artifact(tmp_path: Path) -> None:
    # Big enough that add_items runs for seconds on a busy 2-core machine.
    source = ds.write_npy(tmp_path / "big.npy", ds.gaussian(50_000, 32, seed=43))
    out = tmp_path / "out"
    args = [
        str(KNN_BUILD), "--source", str(source), "--metric", "l2", "--m", "8",
        "--ef-construction", "100", "--ef-search", "64", "--probe-queries", "200",
        "--min-recall", "0.5", "--version", "big", "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if "building HNSW" in line:
                break
        else:
            pytest.fail(f"the build ended before adding vectors: {''.join(seen)}")
        time.sleep(1.0)
        assert proc.poll() is None, "finished before it could be killed; use more data"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()

    assert not (out / "big").exists()
    # Only a staging directory may remain (SIGKILL runs no cleanup); never a partial "big".
    leftovers = list(out.iterdir()) if out.exists() else []
    assert all(p.name.startswith(".tmp-big-") for p in leftovers), leftovers

    # Leftovers of builds killed while writing: this version's, and others' that may
    # belong to Jobs running now ("big-2" shares the prefix "big-").
    stale = [leave_staging(out, "big"), leave_staging(out, "big")]
    others = [leave_staging(out, "big-2"), leave_staging(out, "other")]

    run = knn_build(*args[1:])
    assert run.returncode == 0, run.stderr
    summary = BuildSummary.model_validate_json(run.stdout)
    assert summary.version == "big"
    for stage in stale:
        assert not stage.exists()
        assert f"INFO removed stale staging directory {stage}" in run.stderr
    for stage in others:
        assert (stage / "index.bin").read_bytes() == b"half an index"
    assert sorted(p.name for p in out.iterdir()) == sorted(["big", *(p.name for p in others)])
    manifest = artifact.verify(out / "big")
    assert manifest.count == 50_000
    # Progress lines while adding, ending at 100%.
    progress = [ln for ln in run.stderr.splitlines() if " added " in ln]
    assert progress, run.stderr
    assert all("vectors/s" in ln and " ETA " in ln for ln in progress)
    assert "added 100.0% (49800/49800)" in progress[-1]  # 200 held-out probe rows
    assert np.isfinite(manifest.validation.recall)


def test_interrupt_is_not_reported_as_an_internal_error(tmp_path: Path) -> None:
    """Ctrl-C during add_items ends the build by SIGINT, as Python does, with no
    summary: an interrupt is not a failure of the build to report."""
    source = ds.write_npy(tmp_path / "big.npy", ds.gaussian(50_000, 32, seed=44))
    summary_file = tmp_path / "summary.json"
    args = [
        str(KNN_BUILD), "--source", str(source), "--metric", "l2", "--m", "8",
        "--ef-construction", "100", "--probe-queries", "200", "--min-recall", "0.5",
        "--summary-file", str(summary_file), "--out", str(tmp_path / "out"),
    ]  # fmt: skip
    # SIGINT as a terminal delivers it: a test run started in the background by a
    # non-interactive shell inherits SIGINT ignored, and Python then installs no
    # KeyboardInterrupt handler in the child.
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stderr is not None
        seen = [proc.stderr.readline()]
        while seen[-1] and "building HNSW" not in seen[-1]:
            seen.append(proc.stderr.readline())
        assert seen[-1], f"the build ended before adding vectors: {''.join(seen)}"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGINT, stderr
    assert "KeyboardInterrupt" in stderr
    assert "internal error" not in stderr
    assert stdout == ""
    assert not summary_file.exists()


def refused(*args: str | Path) -> str:
    """Run a build that must be refused as 'already exists with other inputs'; its line."""
    run = knn_build(*args, "--log-level", "WARNING")
    assert run.returncode == BuildExit.STORAGE_ERROR, run.stderr
    (line,) = run.stderr.splitlines()
    assert "already exists with other inputs (" in line
    assert line.endswith("artifacts are immutable, choose another --version")
    assert BuildSummary.model_validate_json(run.stdout).outcome == "Failed"
    return line


def test_ids_content_is_part_of_the_inputs(tmp_path: Path) -> None:
    """Same --ids path, other content: the manifest's ids digest tells them apart."""
    ids_file = ds.write_ids(tmp_path / "ids.txt", ds.str_ids(N))
    args = [*base_args(tmp_path), "--ids", ids_file]
    first, _ = succeed(*args, "--version", "v1")
    directory = tmp_path / "out" / "v1"
    recorded = artifact.verify(directory).source
    assert recorded.ids_sha256 == hashlib.sha256(ids_file.read_bytes()).hexdigest()
    before = state(directory)

    again, stderr = succeed(*args, "--version", "v1")
    assert "reusing it" in stderr
    assert again.sha256 == first.sha256

    ds.write_ids(ids_file, ds.str_ids(N, prefix="item"))
    line = refused(*args, "--version", "v1")
    new_sha = hashlib.sha256(ids_file.read_bytes()).hexdigest()
    assert f"ids sha256 {recorded.ids_sha256[:12]} != {new_sha[:12]}" in line
    assert "source sha256" not in line
    assert state(directory) == before

    # Without --version the changed ids give another version, never a refusal.
    a, _ = succeed(*args)
    ds.write_ids(ids_file, ds.str_ids(N))
    b, _ = succeed(*args)
    assert len({a.version, b.version, "v1"}) == 3


def test_parquet_columns_are_part_of_the_inputs(tmp_path: Path) -> None:
    """Same file, another --column or --id-column: other vectors or ids, same source digest."""
    source = ds.write_parquet(
        tmp_path / "data.parquet",
        ds.gaussian(N, D, seed=45),
        column="a",
        ids=ds.str_ids(N),
        id_column="key",
        extra_columns={
            "b": ds.gaussian(N, D, seed=46).tolist(),
            "other_key": ds.str_ids(N, prefix="item"),
        },
    )
    base = [*base_args(tmp_path)[2:], "--source", source, "--version", "v1"]
    succeed(*base, "--column", "a", "--id-column", "key")
    recorded = artifact.verify(tmp_path / "out" / "v1").source
    assert (recorded.column, recorded.id_column) == ("a", "key")
    succeed(*base, "--column", "a", "--id-column", "key")  # unchanged: reused
    assert "column a != b" in refused(*base, "--column", "b", "--id-column", "key")
    assert "id column key != other_key" in refused(
        *base, "--column", "a", "--id-column", "other_key"
    )
