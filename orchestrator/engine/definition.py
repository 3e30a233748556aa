"""Process definitions: the parsed, validated form of a file in ``processes/``.

A process is a graph of nodes; each node holds an ordered list of logics (Corezoid's
vocabulary). Parsing never trusts the file: every problem becomes a ``DefinitionError``
that names the file, the node and the field. See docs/process-format.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from orchestrator.engine.logic_checks import (
    Fail,
    check_api_call,
    check_base_url,
    check_conditions,
    is_callback_ref,
    parse_duration,
)

NODE_KINDS = ("start", "logic", "wait", "delay", "success", "error", "escalation")
FINAL_KINDS = ("success", "error", "escalation")
LOGIC_TYPES = (
    "go",
    "condition",
    "set_param",
    "twilio",
    "copy_task",
    "modify_task",
    "wait_callback",
    "api_call",
    "call_process",
    "reply",
    "expect_reply",
    "wait_reply",
)
# Logics that open a wait node: the task waits there until a callback releases it.
WAIT_LOGICS = ("wait_callback", "wait_reply")
# The logics that add a reply listener (engine/two_way.py, engine/interpreter.py).
LISTEN_LOGICS = ("expect_reply", "wait_reply")
# Logics that may fail and so need somewhere to send the task.
FALLIBLE_LOGICS = (
    "twilio",
    "copy_task",
    "modify_task",
    "set_param",
    "api_call",
    "call_process",
    "expect_reply",
)
# Of those, the ones whose failures are routine (a server down, a ref taken): the author
# must say where the task goes.
NEEDS_ON_ERROR = ("twilio", "copy_task", "modify_task", "api_call", "call_process")
TWILIO_ACTIONS = (
    "send_sms",
    "send_mms",
    "make_call",
    "fetch_message",
    "fetch_call",
    "list_caller_ids",
    "send_to_many",
)

_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,99}\Z")
_SLUG = re.compile(r"^[a-z][a-z0-9\-]{0,99}\Z")


class DefinitionError(ValueError):
    """A process file that cannot be deployed; says where and why."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        node: str | None = None,
        field: str | None = None,
    ) -> None:
        self.file, self.node, self.field, self.reason = file, node, field, message
        where = [
            f"file {file}" if file else None,
            f"node {node!r}" if node else None,
            f"field {field!r}" if field else None,
        ]
        prefix = ", ".join(w for w in where if w)
        super().__init__(f"{prefix}: {message}" if prefix else message)

    def as_dict(self) -> dict[str, str | None]:
        return {"file": self.file, "node": self.node, "field": self.field, "reason": self.reason}


@dataclass(frozen=True)
class Logic:
    type: str
    index: int
    spec: Mapping[str, Any]
    on_error: str | None = None

    def get(self, key: str, default: Any = None) -> Any:
        return self.spec.get(key, default)


@dataclass(frozen=True)
class TimeLimit:
    """Leave the node for ``to`` after ``after`` (seconds or a template giving seconds),
    or at the Unix time held in the task parameter ``at_param``."""

    to: str
    after: float | str | None = None
    at_param: str | None = None


@dataclass(frozen=True)
class Node:
    id: str
    kind: str
    title: str
    logics: tuple[Logic, ...] = ()
    time_limit: TimeLimit | None = None
    on_error: str | None = None

    @property
    def is_final(self) -> bool:
        return self.kind in FINAL_KINDS

    @property
    def calls(self) -> bool:
        """A call node: its first logic is call_process, and the task waits there."""
        return bool(self.logics) and self.logics[0].type == "call_process"

    def exits(self) -> list[str]:
        targets = [lg.get("to") for lg in self.logics if lg.type in ("go", "condition")]
        targets += [lg.on_error for lg in self.logics if lg.on_error]
        if self.time_limit:
            targets.append(self.time_limit.to)
        return [t for t in targets if isinstance(t, str)]


# Per-process quotas a process file may set under ``limits``.
LIMITS = ("depth", "chain_tasks")


@dataclass(frozen=True)
class ProcessDefinition:
    slug: str
    title: str
    nodes: Mapping[str, Node]
    start: str
    default_escalation: str
    description: str = ""
    inputs: tuple[Mapping[str, Any], ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict)
    # ``incoming_sms``: the start node takes Twilio's incoming messages (SPEC §10);
    # ``reply`` is the template of an immediate TwiML answer, if any.
    incoming_sms: Mapping[str, Any] | None = None
    # Quotas of this process's tasks that create tasks (engine/quotas.py); the keys of
    # LIMITS, each overriding its server-wide default.
    limits: Mapping[str, int] = field(default_factory=dict)

    def node(self, node_id: str) -> Node:
        return self.nodes[node_id]

    def wait_nodes(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.kind == "wait"]

    @cached_property
    def listens(self) -> bool:
        """Whether this process's tasks can ever listen for a reply (expect_reply,
        wait_reply): a task's version never changes, so one whose process cannot has
        no ``reply_listeners`` row to remove when it ends."""
        return any(logic.type in LISTEN_LOGICS for n in self.nodes.values() for logic in n.logics)


def parse_definition(raw: Any, *, file: str | None = None) -> ProcessDefinition:
    """Validate a decoded process file and build its definition."""
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

    nodes = {nid: _parse_node(nid, spec, fail) for nid, spec in raw_nodes.items()}
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
        if lg.type in ("go", "condition"):
            out.append((f"logics[{lg.index}].to", lg.get("to")))
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


def _parse_node(nid: Any, spec: Any, fail: Fail) -> Node:
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
    logics = tuple(_parse_logic(nid, i, lg, node_on_error, fail) for i, lg in enumerate(raw_logics))
    time_limit = _parse_time_limit(nid, spec.get("time_limit"), fail)
    node = Node(
        id=nid, kind=kind, title=title, logics=logics, time_limit=time_limit, on_error=node_on_error
    )
    _check_node_shape(node, fail)
    return node


def _parse_logic(nid: str, i: int, spec: Any, node_on_error: str | None, fail: Fail) -> Logic:
    where = f"logics[{i}]"
    if not isinstance(spec, Mapping):
        raise fail("a logic must be a mapping with a type", nid, where)
    ltype = spec.get("type")
    if ltype not in LOGIC_TYPES:
        raise fail(
            f"unknown logic type {ltype!r} (known: {', '.join(LOGIC_TYPES)})", nid, f"{where}.type"
        )
    on_error = spec.get("on_error", node_on_error)
    logic = Logic(type=ltype, index=i, spec=dict(spec), on_error=on_error)
    if ltype in ("go", "condition") and not isinstance(spec.get("to"), str):
        raise fail("must name the next node", nid, f"{where}.to")
    if ltype == "condition":
        check_conditions(nid, where, spec.get("if"), fail)
    if ltype == "set_param" and not isinstance(spec.get("set"), Mapping):
        raise fail("must map parameter names to values", nid, f"{where}.set")
    if ltype == "twilio":
        if spec.get("action") not in TWILIO_ACTIONS:
            raise fail(f"must be one of {', '.join(TWILIO_ACTIONS)}", nid, f"{where}.action")
        if not isinstance(spec.get("params", {}), Mapping):
            raise fail("must be a mapping", nid, f"{where}.params")
        if "base_url" in spec:
            check_base_url(nid, f"{where}.base_url", spec.get("base_url"), fail)
        cb = spec.get("status_callback")
        if cb is not None and not (isinstance(cb, str) or is_callback_ref(cb)):
            raise fail(
                "must be a URL template or {process, node, form}", nid, f"{where}.status_callback"
            )
    if ltype == "api_call":
        check_api_call(nid, where, spec, fail)
    if ltype in ("expect_reply", "wait_reply"):
        for key in ("from", "to"):
            if not (isinstance(spec.get(key), str) and spec[key].strip()):
                raise fail("must be a phone number or a template giving one", nid, f"{where}.{key}")
    if ltype == "call_process" and spec.get("timeout") is not None:
        if parse_duration(spec.get("timeout")) is None:
            raise fail("must be a duration such as 30, '5min' or '1d'", nid, f"{where}.timeout")
    if ltype == "reply":
        if spec.get("data") is not None and not isinstance(spec.get("data"), Mapping):
            raise fail("must be a mapping", nid, f"{where}.data")
        if not isinstance(spec.get("exception", False), bool):
            raise fail("must be true or false", nid, f"{where}.exception")
    if ltype in ("copy_task", "modify_task", "call_process"):
        if not isinstance(spec.get("process"), str):
            raise fail("must name the target process", nid, f"{where}.process")
        if spec.get("data") is not None and not isinstance(spec.get("data"), Mapping):
            raise fail("must be a mapping", nid, f"{where}.data")
    if ltype == "modify_task" and not (spec.get("ref") or spec.get("task_id")):
        raise fail("needs ref or task_id", nid, where)
    if ltype in NEEDS_ON_ERROR and not on_error:
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


def _check_node_shape(node: Node, fail: Fail) -> None:
    types = [lg.type for lg in node.logics]
    if node.is_final and types:
        raise fail("a final node has no logics", node.id, "logics")
    if node.kind == "start" and node.time_limit:
        raise fail("a start node has no time limit", node.id, "time_limit")
    if node.kind == "wait":
        if not types or types[0] not in WAIT_LOGICS:
            raise fail(
                "a wait node starts with a wait_callback or wait_reply logic", node.id, "logics"
            )
        if any(t in WAIT_LOGICS for t in types[1:]):
            raise fail("a wait node has one wait logic, the first", node.id, "logics")
    elif any(t in WAIT_LOGICS for t in types):
        found = next(t for t in types if t in WAIT_LOGICS)
        raise fail(f"{found} belongs in a wait node", node.id, "logics")
    if node.kind == "delay" and (types or not node.time_limit):
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
        if lg.type == "go":
            raise fail("go must be the last logic of a node", node.id, f"logics[{lg.index}]")
