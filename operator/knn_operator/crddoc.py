"""docs/crd-reference.md, generated from the CRD's schema (`make generate`): every
field of spec and status with its type, default, limits and description, and the CEL
rules with their messages. Pure: schema in, Markdown out."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

_LIMITS = (
    ("minimum", "≥ {}"),
    ("maximum", "≤ {}"),
    ("minLength", "length ≥ {}"),
    ("maxLength", "length ≤ {}"),
    ("minItems", "items ≥ {}"),
    ("maxItems", "items ≤ {}"),
    ("maxProperties", "entries ≤ {}"),
)


def _type(node: dict[str, Any]) -> str:
    if node.get("x-kubernetes-int-or-string"):
        return "int or string"
    if node.get("x-kubernetes-preserve-unknown-fields"):
        return "object (free-form)"
    kind = str(node.get("type", "object"))
    if kind == "array":
        return f"list of {_type(node.get('items', {}))}"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map of {_type(node['additionalProperties'])}"
    return kind


def _limits(node: dict[str, Any]) -> str:
    out = []
    for key, fmt in _LIMITS:
        if key in node:
            bound = node[key]
            exclusive = node.get(f"exclusive{key.capitalize()}") is True
            text = fmt.format(bound)
            out.append(text.replace("≥", ">").replace("≤", "<") if exclusive else text)
    if "enum" in node:
        out.append("one of " + ", ".join(f"`{v}`" for v in node["enum"]))
    if "pattern" in node:
        out.append(f"pattern `{node['pattern']}`")
    return "; ".join(out)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _rule_row(path: str, rule: dict[str, Any]) -> str:
    return f"| `{path}` | rule | | | `{_cell(rule['rule'])}` | {_cell(rule['message'])} |"


def _default(node: dict[str, Any]) -> str:
    value = node.get("default")
    return "" if value is None or isinstance(value, dict | list) else f"`{value}`"


def _rows(node: dict[str, Any], path: str) -> Iterator[str]:
    required = set(node.get("required") or [])
    for rule in node.get("x-kubernetes-validations") or []:
        yield _rule_row(path, rule)
    for name, sub in (node.get("properties") or {}).items():
        here = f"{path}.{name}"
        yield (
            f"| `{here}` | {_type(sub)} | {'yes' if name in required else ''} "
            f"| {_cell(_default(sub))} | {_cell(_limits(sub))} "
            f"| {_cell(sub.get('description', ''))} |"
        )
        items = sub.get("items")
        if sub.get("type") == "array" and isinstance(items, dict):
            yield from _rows(items, here + "[]")
        elif sub.get("properties") or sub.get("x-kubernetes-validations"):
            yield from _rows(sub, here)


def reference(crd: dict[str, Any]) -> str:
    version = crd["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    kind = crd["spec"]["names"]["kind"]
    group = crd["spec"]["group"]
    lines = [
        f"# {kind} reference ({group}/{version['name']})",
        "",
        "Generated from the CRD's schema by `make generate` (operator/knn_operator/crddoc.py);",
        "a test fails when it is stale. `kubectl explain "
        f"{crd['spec']['names']['singular']}.spec` shows the same descriptions.",
        "",
        f"Short name: `{', '.join(crd['spec']['names'].get('shortNames', []))}`. Printer columns: "
        + ", ".join(c["name"] for c in version.get("additionalPrinterColumns", []))
        + ".",
        "",
    ]
    for rule in schema.get("x-kubernetes-validations") or []:
        lines.append(f"Object rule: `{rule['rule']}` — {rule['message']}.")
    for part in ("spec", "status"):
        node = schema["properties"][part]
        lines += [
            "",
            f"## {part}",
            "",
            "| Field | Type | Required | Default | Limits | Description |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        lines += list(_rows(node, part))
    return "\n".join(lines) + "\n"
