"""`knn-build`'s handling of exceptions nothing expected, in-process.

Test double: `run_build` is replaced by a function that raises, because an out-of-memory
error or an interrupt cannot be produced on demand at a chosen point of a real build.
tests/dataplane/test_build_errors.py provokes a real internal error in a real process.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from knn_contracts.artifact import BuildExit, BuildSummary
from knn_serving.build import cli
from knn_serving.build.pipeline import BuildOptions, BuildResult


def raising(error: BaseException) -> object:
    def run_build(opts: BuildOptions) -> BuildResult:
        raise error

    return run_build


def main(tmp_path: Path) -> int:
    args = ["--source", str(tmp_path / "unused.npy"), "--metric", "l2", "--version", "v1"]
    return cli.main(
        [*args, "--summary-file", str(tmp_path / "summary.json"), "--out", str(tmp_path / "out")]
    )


def summary(tmp_path: Path) -> BuildSummary:
    return BuildSummary.model_validate_json((tmp_path / "summary.json").read_bytes())


def test_an_exception_without_a_message_names_its_type(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "run_build", raising(MemoryError()))
    assert main(tmp_path) == BuildExit.INTERNAL_ERROR
    assert capsys.readouterr().err.splitlines()[-1] == "knn-build: internal error: MemoryError"
    got = summary(tmp_path)
    assert (got.outcome, got.version) == ("Failed", "v1")
    assert got.message == "internal error: MemoryError"


def test_a_long_multiline_message_becomes_one_line_within_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    detail = "\n".join(f"line {i} from a verbose library" for i in range(1000))
    monkeypatch.setattr(cli, "run_build", raising(RuntimeError(detail)))
    assert main(tmp_path) == BuildExit.INTERNAL_ERROR
    one_line = "internal error: RuntimeError: " + " ".join(detail.split())
    assert capsys.readouterr().err.splitlines()[-1] == "knn-build: " + one_line
    raw = (tmp_path / "summary.json").read_bytes()
    assert len(raw) <= cli.SUMMARY_LIMIT + 1  # the line and its newline
    assert raw.count(b"\n") == 1
    message = summary(tmp_path).message
    assert message.endswith("…")
    assert one_line.startswith(message[:-1])
    assert len(message) > cli.SUMMARY_LIMIT // 2, "cut far more than needed"


@pytest.mark.parametrize("error", [KeyboardInterrupt(), SystemExit(7)], ids=repr)
def test_interrupts_and_exits_are_not_swallowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    monkeypatch.setattr(cli, "run_build", raising(error))
    with pytest.raises(type(error)):
        main(tmp_path)
    assert not (tmp_path / "summary.json").exists()
