"""Process definitions: parsing and checking a file in ``processes/`` into the
``ProcessDefinition`` of ``process_model.py``.

A process is a graph of nodes; each node holds an ordered list of logics (Corezoid's
vocabulary). Parsing never trusts the file: every problem becomes a ``DefinitionError``
that names the file, the node and the field. The logic types, and their fields' checks,
are those the plugins declare (``plugins.known_logic_types``); this module knows only
what every type shares. See docs/process-format.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from orchestrator.engine.logic_checks import Fail, parse_duration
from orchestrator.engine.logic_types import LogicType
from orchestrator.engine.plugins import known_logic_types
from orchestrator.engine.process_model import (
    FINAL_KINDS,
    LIMITS,
    NODE_KINDS,
    DefinitionError,
    Logic,
    Node,
    ProcessDefinition,
    TimeLimit,
)

__all__ = [
    "FINAL_KINDS",
    "LIMITS",
    "NODE_KINDS",
    "DefinitionError",
    "Logic",
    "Node",
    "ProcessDefinition",
    "TimeLimit",
    "parse_definition",
]

_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,99}\Z")
_SLUG = re.compile(r"^[a-z][a-z0-9\-]{0,99}\Z")
Types = Mapping[str, LogicType]


def parse_definition(
    raw: Any, *, file: str | None = None, logic_types: Types | None = None
) -> ProcessDefinition:
    """Validate a decoded process file and build its definition. ``logic_types``: the
    types the file may use (default: every type the plugins declare)."""
    types = known_logic_types() if logic_types is None else logic_types
    if not isinstance(raw, Mapping):
        raise DefinitionError("a process file must be a mapping", file=file)

    def fail(msg: str, node: str | None = None, fld: str | None = None) -> DefinitionError:
        return DefinitionError(msg, file=file, node=node, field=fld)

    allowed_top = {
        "slug",
        "title",
        "description",
        "inputs",
        "nodes",
        "on_error",
        "incoming_sms",
        "limits",
    }
    for key in raw:
        if key not in allowed_top:
            raise fail(f"unknown key (allowed: {', '.join(sorted(allowed_top))})", fld=key)
    slug = raw.get("slug")
    if not isinstance(slug, str) or not _SLUG.match(slug):
        raise fail(
            "must be lowercase letters, digits and dashes, starting with a letter", fld="slug"
        )
    title = raw.get("title")
    if not isinstance(title, str) or not title.strip():
        raise fail("is required", fld="title")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise fail("must be text", fld="description")
    inputs = raw.get("inputs", [])
    if not isinstance(inputs, list) or not all(
        isinstance(i, Mapping) and isinstance(i.get("name"), str) for i in inputs
    ):
        raise fail("must be a list of {name, required?, description?}", fld="inputs")
    incoming = _parse_incoming(raw.get("incoming_sms"), fail)
    limits = raw.get("limits", {})
    if not isinstance(limits, Mapping) or not all(
        k in LIMITS and isinstance(v, int) and not isinstance(v, bool) and v >= 1
        for k, v in limits.items()
    ):
        raise fail(
            f"must map {' and/or '.join(LIMITS)} to whole numbers of at least 1", fld="limits"
        )
    raw_nodes = raw.get("nodes")
    if not isinstance(raw_nodes, Mapping) or not raw_nodes:
        raise fail("must map node ids to nodes", fld="nodes")

    nodes = {nid: _parse_node(nid, spec, types, fail) for nid, spec in raw_nodes.items()}
    starts = [n.id for n in nodes.values() if n.kind == "start"]
    if len(starts) != 1:
        raise fail(f"a process needs exactly one start node, found {len(starts)}", fld="nodes")
    escalations = [n.id for n in nodes.values() if n.kind == "escalation"]
    default_escalation = raw.get("on_error") or (escalations[0] if escalations else None)
    if not isinstance(default_escalation, str) or default_escalation not in nodes:
        raise fail("a process needs an escalation node (or on_error naming one)", fld="on_error")
    if nodes[default_escalation].kind == "success":
        raise fail("the default error path cannot be a success node", fld="on_error")

    for node in nodes.values():
        for target_field, target in _targets(node):
            if target not in nodes:
                raise fail(f"links to unknown node {target!r}", node.id, target_field)
            if target_field.endswith("on_error") and nodes[target].kind == "success":
                raise fail(
                    f"an error path cannot end in success node {target!r}", node.id, target_field
                )
        if not node.is_final and not node.exits():
            raise fail("has no exit: add a go logic or a time limit", node.id, "logics")
    reachable = _reachable(nodes, starts[0], default_escalation)
    unreachable = [nid for nid in nodes if nid not in reachable]
    if unreachable:
        raise fail(
            f"cannot be reached from the start node: {', '.join(unreachable)}", unreachable[0]
        )
    return ProcessDefinition(
        slug=slug,
        title=title.strip(),
        nodes=nodes,
        start=starts[0],
        default_escalation=default_escalation,
        description=description,
        inputs=tuple(inputs),
        raw=raw,
        incoming_sms=incoming,
        limits=dict(limits),
    )


def _parse_incoming(spec: Any, fail: Fail) -> Mapping[str, Any] | None:
    """``incoming_sms: true`` or ``{reply: "template"}``; absent or false: None."""
    if spec is None or spec is False:
        return None
    if spec is True:
        return {}
    if not isinstance(spec, Mapping) or set(spec) - {"reply"}:
        raise fail("must be true or {reply: <text template>}", fld="incoming_sms")
    reply = spec.get("reply")
    if reply is not None and not (isinstance(reply, str) and reply.strip()):
        raise fail("must be a non-empty text template", fld="incoming_sms.reply")
    return dict(spec)


def _targets(node: Node) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for lg in node.logics:
        out += [(f"logics[{lg.index}].{name}", value) for name, value in lg.links]
        if lg.on_error:
            out.append((f"logics[{lg.index}].on_error", lg.on_error))
    if node.time_limit:
        out.append(("time_limit.to", node.time_limit.to))
    return out


def _reachable(nodes: Mapping[str, Node], start: str, escalation: str) -> set[str]:
    seen: set[str] = set()
    stack = [start, escalation]  # the default escalation is reachable from any failure
    while stack:
        nid = stack.pop()
        if nid in seen:
            continue
        seen.add(nid)
        stack.extend(nodes[nid].exits())
    return seen


def _parse_node(nid: Any, spec: Any, types: Types, fail: Fail) -> Node:
    if not isinstance(nid, str) or not _ID.match(nid):
        raise fail(
            "node ids are letters, digits, '_' and '-', starting with a letter", str(nid), "id"
        )
    if not isinstance(spec, Mapping):
        raise fail("a node must be a mapping", nid)
    allowed = {"kind", "title", "logics", "time_limit", "on_error", "description"}
    for key in spec:
        if key not in allowed:
            raise fail(f"unknown key (allowed: {', '.join(sorted(allowed))})", nid, key)
    kind = spec.get("kind", "logic")
    if kind not in NODE_KINDS:
        raise fail(f"must be one of {', '.join(NODE_KINDS)}", nid, "kind")
    title = spec.get("title", nid)
    if not isinstance(title, str):
        raise fail("must be text", nid, "title")
    node_on_error = spec.get("on_error")
    if node_on_error is not None and not isinstance(node_on_error, str):
        raise fail("must name a node", nid, "on_error")
    raw_logics = spec.get("logics", [])
    if not isinstance(raw_logics, list):
        raise fail("must be a list", nid, "logics")
    logics = tuple(
        _parse_logic(nid, i, lg, node_on_error, types, fail) for i, lg in enumerate(raw_logics)
    )
    time_limit = _parse_time_limit(nid, spec.get("time_limit"), fail)
    node = Node(
        id=nid, kind=kind, title=title, logics=logics, time_limit=time_limit, on_error=node_on_error
    )
    _check_node_shape(node, types, fail)
    return node


def _parse_logic(
    nid: str, i: int, spec: Any, node_on_error: str | None, types: Types, fail: Fail
) -> Logic:
    where = f"logics[{i}]"
    if not isinstance(spec, Mapping):
        raise fail("a logic must be a mapping with a type", nid, where)
    ltype = spec.get("type")
    declared = types.get(ltype) if isinstance(ltype, str) else None
    if declared is None:
        raise fail(
            f"unknown logic type {ltype!r} (known: {', '.join(sorted(types))})",
            nid,
            f"{where}.type",
        )
    on_error = spec.get("on_error", node_on_error)
    logic = Logic(
        type=declared.name, index=i, spec=dict(spec), on_error=on_error, declared=declared
    )

    def fail_here(msg: str, fld: str | None = None) -> Exception:
        return fail(msg, nid, f"{where}.{fld}" if fld else where)

    if declared.check is not None:
        declared.check(spec, fail_here)
    if declared.needs_on_error and not on_error:
        raise fail(
            "needs on_error (here or on the node) naming an escalation path",
            nid,
            f"{where}.on_error",
        )
    return logic


def _parse_time_limit(nid: str, spec: Any, fail: Fail) -> TimeLimit | None:
    if spec is None:
        return None
    if not isinstance(spec, Mapping) or not isinstance(spec.get("to"), str):
        raise fail("needs to (the node to go to) and after or at_param", nid, "time_limit")
    after = spec.get("after")
    at_param = spec.get("at_param")
    if at_param is not None and not (isinstance(at_param, str) and at_param):
        raise fail("must name a task parameter holding a Unix time", nid, "time_limit.at_param")
    if after is None and at_param is None:
        raise fail("needs after (a duration) or at_param", nid, "time_limit")
    if after is not None:
        if isinstance(after, str) and "{{" in after:
            return TimeLimit(to=spec["to"], after=after, at_param=at_param)
        seconds = parse_duration(after)
        if seconds is None:
            raise fail(
                "must be a duration such as 30, '30s', '5min', '2h' or '1d'",
                nid,
                "time_limit.after",
            )
        return TimeLimit(to=spec["to"], after=seconds, at_param=at_param)
    return TimeLimit(to=spec["to"], at_param=str(at_param))


def _check_node_shape(node: Node, known: Types, fail: Fail) -> None:
    waits = [lg.type for lg in node.logics if lg.declared is not None and lg.declared.waits]
    if node.is_final and node.logics:
        raise fail("a final node has no logics", node.id, "logics")
    if node.kind == "start" and node.time_limit:
        raise fail("a start node has no time limit", node.id, "time_limit")
    if node.kind == "wait":
        first = node.logics[0].declared if node.logics else None
        if first is None or not first.waits:
            wait_types = " or ".join(sorted(n for n, t in known.items() if t.waits))
            raise fail(f"a wait node starts with a {wait_types} logic", node.id, "logics")
        if len(waits) > 1:
            raise fail("a wait node has one wait logic, the first", node.id, "logics")
    elif waits:
        raise fail(f"{waits[0]} belongs in a wait node", node.id, "logics")
    if node.kind == "delay" and (node.logics or not node.time_limit):
        raise fail("a delay node has only a time_limit", node.id, "time_limit")
    for lg in node.logics:
        if lg.type == "call_process" and (lg.index != 0 or node.kind != "logic"):
            raise fail(
                "call_process must be the first logic of a logic node (the task waits there "
                "for the reply, then runs the logics after it)",
                node.id,
                f"logics[{lg.index}]",
            )
    for lg in node.logics[:-1]:
        if lg.declared is not None and lg.declared.last:
            raise fail(
                f"{lg.type} must be the last logic of a node", node.id, f"logics[{lg.index}]"
            )
