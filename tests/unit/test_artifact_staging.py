"""Staging directory names: what a build of one version may remove as its own leftovers."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from knn_serving import artifact


def test_staging_dirs_match_their_versions_pattern(tmp_path: Path) -> None:
    # The pattern relies on mkdtemp's naming; this fails if a Python names them otherwise.
    for version in ("v1", "a", "v1.2-rc_3"):
        with artifact.staging_dir(tmp_path, version) as stage:
            assert artifact.staging_name_pattern(version).fullmatch(stage.name), stage.name


@pytest.mark.parametrize(
    ("version", "other"),
    [("a", "a-b"), ("a", "a.1"), ("a", "a-bcdefghi"), ("v1", "v10"), ("a-b", "a")],
)
def test_a_version_never_matches_another_versions_staging(
    tmp_path: Path, version: str, other: str
) -> None:
    with artifact.staging_dir(tmp_path, other) as stage:
        assert not artifact.staging_name_pattern(version).fullmatch(stage.name), stage.name


def test_remove_stale_staging_keeps_everything_not_its_own(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    stale = [out / ".tmp-v1-abcd_123", out / ".tmp-v1-zz999999"]
    for d in stale:
        (d / "sub").mkdir(parents=True)
        (d / "sub" / "index.bin").write_bytes(b"partial")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "precious").write_text("keep")
    kept: dict[str, Callable[[Path], object]] = {
        ".tmp-v1-linkedto": lambda p: p.symlink_to(outside),  # a link is never followed
        ".tmp-v1-file1234": lambda p: p.write_text("a file, not a staging directory"),
        ".tmp-v1-short": os.mkdir,  # not mkdtemp's 8 characters
        ".tmp-v1-2-abcd1234": os.mkdir,  # version "v1-2"
        ".tmp-v2-abcd1234": os.mkdir,
        "v1": os.mkdir,
    }
    for name, make in kept.items():
        make(out / name)
    with caplog.at_level(logging.INFO, logger="knn-build"):
        removed = artifact.remove_stale_staging(out, "v1")
    assert sorted(removed) == sorted(stale)
    assert sorted(p.name for p in out.iterdir()) == sorted(kept)
    assert (outside / "precious").read_text() == "keep"
    for d in stale:
        assert f"removed stale staging directory {d}" in caplog.text


def test_remove_stale_staging_without_an_out_directory(tmp_path: Path) -> None:
    assert artifact.remove_stale_staging(tmp_path / "absent", "v1") == []
    (tmp_path / "file").write_text("x")
    assert artifact.remove_stale_staging(tmp_path / "file", "v1") == []
