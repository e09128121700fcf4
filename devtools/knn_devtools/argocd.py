"""Runs an Argo CD Lua health check on a resource, with Debian's Lua 5.1 (the Lua
Argo CD embeds), the way Argo CD does: the resource as the global ``obj``, the
script's returned table as the health."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

LUA = "lua5.1"


class LuaMissingError(RuntimeError):
    """lua5.1 is not installed (make install / hack/install-system-deps.sh installs it)."""


def lua_value(value: Any) -> str:
    """A Lua literal for a JSON-like value: objects become tables with string keys,
    arrays tables with 1-based positions (as Argo CD's JSON-to-Lua conversion)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid Lua 5.1 string literal
    if isinstance(value, list):
        return "{" + ", ".join(lua_value(v) for v in value) + "}"
    if isinstance(value, dict):
        items = (f"[{json.dumps(str(k))}] = {lua_value(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"no Lua literal for {type(value).__name__}")


def health(script: Path, obj: dict[str, Any]) -> tuple[str, str]:
    """(status, message) the script gives ``obj``."""
    binary = shutil.which(LUA)
    if binary is None:
        raise LuaMissingError(
            f"{LUA} not found: make install (hack/install-system-deps.sh) installs it"
        )
    program = (
        f"obj = {lua_value(obj)}\n"
        f"local hs = dofile({json.dumps(str(script))})\n"
        'io.write(hs.status, "\\n", hs.message or "")\n'
    )
    out = subprocess.run(
        [binary, "-"], input=program, capture_output=True, text=True, timeout=30, check=True
    )
    status, _, message = out.stdout.partition("\n")
    return status, message


class JqMissingError(RuntimeError):
    """jq is not installed (make install / hack/install-system-deps.sh installs it)."""


def without_ignored(obj: dict[str, Any], jq_paths: list[str]) -> dict[str, Any]:
    """``obj`` without what Argo CD's ignoreDifferences ``jqPathExpressions`` name,
    the way Argo CD compares a resource: each expression's paths are deleted from
    both the desired and the live object before they are diffed."""
    binary = shutil.which("jq")
    if binary is None:
        raise JqMissingError("jq not found: make install (hack/install-system-deps.sh) installs it")
    program = " | ".join(f"del({p})" for p in jq_paths) or "."
    out = subprocess.run(
        [binary, "-c", program],
        input=json.dumps(obj),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result
