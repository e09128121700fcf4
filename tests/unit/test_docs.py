"""Generated and hand-written docs that must follow the code: the CRD reference is what
the generator writes, and docs/troubleshooting.md lists exactly the Event and condition
reasons the operator can write (found in its source, not in a list kept by hand)."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from knn_contracts import rollout, routing, status
from knn_operator import crdgen

ROOT = Path(__file__).resolve().parents[2]
OPERATOR = ROOT / "operator" / "knn_operator"
CAMEL = re.compile(r"^[A-Z][A-Za-z]+$")
CONTRACTS = {"names": rollout, "cond_names": status, "rnames": routing}


def test_the_crd_reference_is_what_the_generator_writes() -> None:
    for name in crdgen.DOCS:
        assert (ROOT / "docs" / name).read_text() == crdgen.render_doc(name), (
            f"docs/{name} is stale: run `make generate`"
        )


def _names(node: ast.AST) -> Iterator[str]:
    """Reason-like strings an expression can evaluate to: literals, and contract
    constants (names.X / cond_names.X)."""
    for n in ast.walk(node):
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and CAMEL.match(n.value):
            yield n.value
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name):
            module = CONTRACTS.get(n.value.id)
            value = getattr(module, n.attr, None) if module else None
            if isinstance(value, str):
                yield value


def _local_tables(fn: ast.AST) -> dict[str, set[str]]:
    """Values of dicts a function builds by name (`reason = {...}`; `reason[k] = "..."`)."""
    tables: dict[str, set[str]] = {}
    for n in ast.walk(fn):
        if not (isinstance(n, ast.Assign) and len(n.targets) == 1):
            continue
        target = n.targets[0]
        if isinstance(target, ast.Name) and isinstance(n.value, ast.Dict):
            values = [v for v in n.value.values if v is not None]
            tables.setdefault(target.id, set()).update(s for v in values for s in _names(v))
        elif isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name):
            tables.setdefault(target.value.id, set()).update(_names(n.value))
    return tables


def reasons_in_source() -> tuple[set[str], list[str]]:
    """Reasons passed to Event(type, reason, ...) and set_condition(..., reason, ...),
    and the calls whose reason is computed elsewhere (checked against the contracts)."""
    found: set[str] = set()
    computed: list[str] = []
    for path in OPERATOR.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            tables = _local_tables(fn)
            for call in ast.walk(fn):
                if not isinstance(call, ast.Call):
                    continue
                func = call.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                position = {"Event": 1, "set_condition": 3}.get(name)
                if position is None or len(call.args) <= position:
                    continue
                arg = call.args[position]
                got = set(_names(arg))
                for sub in ast.walk(arg):
                    if isinstance(sub, ast.Name) and sub.id in tables:
                        got |= tables[sub.id]
                if got:
                    found |= got
                else:
                    computed.append(f"{path.name}:{call.lineno} {ast.unparse(arg)}")
    return found, computed


def contract_reasons() -> set[str]:
    out = set(rollout.PHASES)  # phase changes are Events named by the new phase
    for module in (rollout, status, routing):
        for key, value in vars(module).items():
            if key.startswith(("REASON_", "EVENT_", "CAUSE_")) and isinstance(value, str):
                out.add(value)
    return out


def documented() -> set[str]:
    text = (ROOT / "docs" / "troubleshooting.md").read_text()
    return set(re.findall(r"^\| `([A-Za-z]+)` \|", text, re.MULTILINE))


def test_troubleshooting_lists_every_reason_the_operator_can_write_and_no_other() -> None:
    found, computed = reasons_in_source()
    # Reasons computed at run time (a phase, a verdict's reason, _progressing's, a
    # route's problem) all come from the contracts, which are documented as a whole.
    assert len(computed) <= 6, computed
    emitted = found | contract_reasons()
    listed = documented()
    assert not emitted - listed, f"add to docs/troubleshooting.md: {sorted(emitted - listed)}"
    assert not listed - emitted, f"not written by the operator: {sorted(listed - emitted)}"


def test_the_source_scan_sees_known_reasons() -> None:
    """The scan itself can fail: it finds literals, contract constants and table values."""
    found, _ = reasons_in_source()
    assert {"InvalidSpec", "BuildSuperseded", "Promoted", "BuilderPodWaiting"} <= found
    assert {"Available", "StableUnavailable", "BuildSucceeded"} <= found
