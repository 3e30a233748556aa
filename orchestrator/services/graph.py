"""A process as a picture: Mermaid flowchart or Graphviz DOT text, for docs and consoles.

Solid arrows are ``go`` and ``condition`` exits (labelled with the condition), dotted ones
error paths and time limits. The default escalation, reachable from every failure, gets
no arrows of its own unless a node names it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from orchestrator.engine.definition import Logic, Node, ProcessDefinition

_SHAPES = {
    "start": ('(["', '"])'),
    "logic": ('["', '"]'),
    "wait": ('{{"', '"}}'),
    "delay": ('>"', '"]'),
    "success": ('(["', '"])'),
    "error": ('[["', '"]]'),
    "escalation": ('[["', '"]]'),
}
_CLASSES = {
    "start": "fill:#e3f2fd,stroke:#1565c0",
    "wait": "fill:#fff8e1,stroke:#f9a825",
    "delay": "fill:#fff8e1,stroke:#f9a825",
    "success": "fill:#e8f5e9,stroke:#2e7d32",
    "escalation": "fill:#ffebee,stroke:#c62828",
}


def edges(definition: ProcessDefinition) -> list[tuple[str, str, str, bool]]:
    """(from, to, label, dotted) for every link of the process, each once."""
    out: list[tuple[str, str, str, bool]] = []
    for node in definition.nodes.values():
        for lg in node.logics:
            if lg.type == "go":
                out.append((node.id, str(lg.get("to")), "", False))
            elif lg.type == "condition":
                out.append((node.id, str(lg.get("to")), _condition(lg), False))
            if lg.on_error and lg.on_error != node.on_error:
                out.append((node.id, lg.on_error, f"{lg.type} error", True))
        if node.on_error:
            out.append((node.id, node.on_error, "error", True))
        if node.time_limit is not None:
            out.append((node.id, node.time_limit.to, _limit(node), True))
    return list(dict.fromkeys(out))


def mermaid(definition: ProcessDefinition) -> str:
    ids = _ids(definition)
    lines = ["flowchart TD"]
    for node in definition.nodes.values():
        left, right = _SHAPES[node.kind]
        label = _text(node.title if node.title == node.id else f"{node.title} ({node.id})")
        lines.append(f"    {ids[node.id]}{left}{label}{right}")
    for src, dst, label, dotted in edges(definition):
        arrow = "-.->" if dotted else "-->"
        text = f'|"{_text(label)}"|' if label else ""
        lines.append(f"    {ids[src]} {arrow}{text} {ids[dst]}")
    for kind, style in _CLASSES.items():
        members = [ids[n.id] for n in definition.nodes.values() if _kind(n) == kind]
        if members:
            lines.append(f"    classDef {kind} {style}")
            lines.append(f"    class {','.join(members)} {kind}")
    return "\n".join(lines) + "\n"


def dot(definition: ProcessDefinition) -> str:
    shapes = {"start": "oval", "wait": "hexagon", "delay": "cds", "success": "oval"}
    lines = [f"digraph {json.dumps(definition.slug)} {{", "    rankdir=TB;"]
    for node in definition.nodes.values():
        shape = shapes.get(node.kind, "box")
        if node.kind in ("error", "escalation"):
            shape = "doubleoctagon"
        lines.append(f"    {json.dumps(node.id)} [label={json.dumps(node.title)}, shape={shape}];")
    for src, dst, label, dotted in edges(definition):
        attrs = [f"label={json.dumps(label)}"] if label else []
        if dotted:
            attrs.append("style=dashed")
        lines.append(f"    {json.dumps(src)} -> {json.dumps(dst)} [{', '.join(attrs)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _kind(node: Node) -> str:
    return "escalation" if node.kind == "error" else node.kind


def _ids(definition: ProcessDefinition) -> dict[str, str]:
    """Mermaid-safe ids (letters, digits, _), unique even if two node ids map alike."""
    out: dict[str, str] = {}
    for i, nid in enumerate(definition.nodes):
        out[nid] = f"n{i}_{re.sub(r'[^A-Za-z0-9_]', '_', nid)}"
    return out


def _text(value: str) -> str:
    return value.replace('"', "#quot;").replace("|", "#124;")


def _condition(lg: Logic) -> str:
    parts = []
    for cond in lg.get("if") or []:
        if isinstance(cond, Mapping):
            parts.append(f"{cond.get('param')} {cond.get('fun', 'eq')} {_short(cond.get('value'))}")
    return " and ".join(parts)


def _limit(node: Node) -> str:
    limit = node.time_limit
    assert limit is not None
    if limit.at_param:
        return f"at {limit.at_param}"
    after = limit.after
    return f"after {after:g} s" if isinstance(after, float) else f"after {after}"


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 30 else text[:27] + "..."
