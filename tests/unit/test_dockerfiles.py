"""The rules the product's images follow, checked on the Dockerfiles themselves:
a pinned base image as ARG BASE_IMAGE, multi-stage with no compiler in the final stage,
a non-root numeric user, the constraints file the tests use, the CLIs' entry points,
and no code built for the build machine's CPU (-march=native)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = ["Dockerfile.serving", "Dockerfile.operator"]
COMPILERS = re.compile(r"\b(g\+\+|gcc|clang|build-essential|cmake)\b")


def instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (ROOT / name).read_text()
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")
    ))  # fmt: skip
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages(name: str) -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for ins in instructions(name):
        if ins[0] == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


@pytest.mark.parametrize("name", DOCKERFILES)
def test_the_base_image_is_a_pinned_build_arg_used_by_every_stage(name: str) -> None:
    ins = instructions(name)
    assert ins[0][0] == "ARG", "ARG BASE_IMAGE comes before the first FROM"
    arg = ins[0][1]
    assert re.fullmatch(r"BASE_IMAGE=python:3\.11\.\d+-slim-bookworm", arg), arg
    froms = [rest for word, rest in ins if word == "FROM"]
    assert len(froms) >= 2, "multi-stage"
    assert all(f.split()[0] == "${BASE_IMAGE}" for f in froms), froms


@pytest.mark.parametrize("name", DOCKERFILES)
def test_the_final_stage_runs_as_a_numeric_non_root_user_without_compilers(name: str) -> None:
    final = stages(name)[-1]
    users = [rest for word, rest in final if word == "USER"]
    assert users and re.fullmatch(r"[1-9][0-9]*:[1-9][0-9]*", users[-1]), users
    for word, rest in final:
        if word == "RUN":
            assert not COMPILERS.search(rest), f"a compiler in the final image: {rest}"
    assert any(word in ("ENTRYPOINT", "CMD") for word, _ in final)


@pytest.mark.parametrize("name", DOCKERFILES)
def test_pip_installs_with_the_tests_constraints_file(name: str) -> None:
    runs = [rest for word, rest in instructions(name) if word == "RUN" and "pip install" in rest]
    installs = [r for r in runs if "-c constraints.txt" in r]
    assert installs, runs
    copies = [rest for word, rest in instructions(name) if word == "COPY"]
    assert any("constraints.txt" in c for c in copies)


@pytest.mark.parametrize("name", DOCKERFILES)
def test_no_code_for_the_build_machines_cpu(name: str) -> None:
    text = (ROOT / name).read_text()
    assert "-march=native" not in re.sub(r"#.*", "", text)
    if "hnswlib" in text or "serving" in name:
        # hnswlib builds with -march=native unless told not to.
        assert re.search(r"^ARG HNSWLIB_NO_NATIVE=1$", text, re.MULTILINE)
        assert re.search(r"^ARG CFLAGS=-march=x86-64-v\d$", text, re.MULTILINE)


def test_the_serving_image_carries_both_clis() -> None:
    text = (ROOT / "Dockerfile.serving").read_text()
    assert "'.[serving]'" in text  # the extra whose console scripts are knn-build, knn-serve
    assert re.search(r'(CMD|ENTRYPOINT) \["knn-serve"', text)
