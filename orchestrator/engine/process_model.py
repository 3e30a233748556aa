"""The parsed form of a process file: nodes holding logics (Corezoid's vocabulary).

``definition.parse_definition`` builds these from a file and checks them; nothing here
parses. A ``Logic`` carries its declared ``LogicType`` (engine/logic_types.py), so the
graph's questions (where can a node go, can the process listen for replies) need no
list of type names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from orchestrator.engine.logic_types import LogicType

NODE_KINDS = ("start", "logic", "wait", "delay", "success", "error", "escalation")
FINAL_KINDS = ("success", "error", "escalation")
# Per-process quotas a process file may set under ``limits``.
LIMITS = ("depth", "chain_tasks")


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
    # What the process format knows of ``type``, set by the parser (None: a logic built
    # by hand, which names no node and opens no wait).
    declared: LogicType | None = field(default=None, compare=False, repr=False)

    @property
    def links(self) -> list[tuple[str, Any]]:
        """(field, value) of each field naming the node the task goes to next."""
        fields = self.declared.links if self.declared else ()
        return [(name, self.spec.get(name)) for name in fields]

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
        targets = [value for lg in self.logics for _field, value in lg.links]
        targets += [lg.on_error for lg in self.logics if lg.on_error]
        if self.time_limit:
            targets.append(self.time_limit.to)
        return [t for t in targets if isinstance(t, str)]


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
        return any(
            logic.declared is not None and logic.declared.listens
            for n in self.nodes.values()
            for logic in n.logics
        )
