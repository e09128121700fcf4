"""`knn-artifact verify|delete` on real artifacts built by the real knn-build."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.dataplane import datasets as ds
else:
    import datasets as ds

BIN = Path(sys.executable).parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "knn-artifact"), *args], capture_output=True, text=True, timeout=120, check=False
    )


def build(tmp_path: Path) -> Path:
    src = ds.write_npy(tmp_path / "v.npy", ds.gaussian(500, 8, seed=3))
    subprocess.run(
        [
            str(BIN / "knn-build"),
            "--source",
            str(src),
            "--metric",
            "l2",
            "--probe-queries",
            "20",
            "--k",
            "5",
            "--min-recall",
            "0.5",
            "--version",
            "v1",
            "--out",
            str(tmp_path / "out"),
            "--log-level",
            "WARNING",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return tmp_path / "out" / "v1"


def test_verify_accepts_a_good_artifact_and_refuses_a_corrupt_one(tmp_path: Path) -> None:
    art = build(tmp_path)
    ok = run("verify", str(art))
    assert ok.returncode == 0 and "verified" in ok.stdout
    index = art / "index.bin"
    data = bytearray(index.read_bytes())
    data[len(data) // 2] ^= 0xFF
    index.write_bytes(bytes(data))
    bad = run("verify", f"file://{art}")
    assert bad.returncode == 3
    assert "sha256 mismatch" in bad.stderr and "index.bin" in bad.stderr


def test_delete_removes_one_version_and_is_idempotent(tmp_path: Path) -> None:
    art = build(tmp_path)
    keep = tmp_path / "out" / "unrelated.txt"
    keep.write_text("not an artifact")
    first = run("delete", str(art))
    assert first.returncode == 0 and "deleted" in first.stdout
    assert not art.exists() and keep.exists()
    again = run("delete", str(art))
    assert again.returncode == 0 and "already absent" in again.stdout


def test_delete_refuses_what_is_not_an_artifact(tmp_path: Path) -> None:
    victim = tmp_path / "data"
    victim.mkdir()
    (victim / "precious.npy").write_bytes(b"x")
    out = run("delete", str(victim))
    assert out.returncode == 3
    assert "refusing to delete" in out.stderr
    assert (victim / "precious.npy").exists()
