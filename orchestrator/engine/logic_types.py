"""What the process format knows of one logic ``type``: its fields (a JSON Schema fragment
for ``process.schema.json``), the engine's own checks of them, and the few facts the
core's graph checks need (which fields name a node, whether it opens a wait node…).

A plugin declares its types in ``Plugin(logic_types=...)`` (engine/plugins.py);
``definition.py`` and ``schema.py`` know only the declared ones. The two logics the core
runs itself, ``wait_callback`` and ``call_process``, are declared here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.engine.logic_checks import LogicFail, check_process_target, parse_duration

# A JSON Schema fragment (decoded JSON: its values are any JSON).
JsonSchema = Mapping[str, Any]


# Checks one logic's fields (the mapping as written), raising ``fail(...)`` on the first
# problem. It runs before the schema at deploy, so a mistake the two both catch gets the
# engine's own message; ``fields`` is what an editor sees.
LogicCheck = Callable[[Mapping[str, Any], LogicFail], None]


@dataclass(frozen=True, eq=False)
class LogicType:
    """One logic ``type``. Every logic may have ``on_error`` and ``description``; the
    fragment in ``fields`` / ``required`` says the rest. Compared by identity: two plugins
    declaring the same name is an error unless they declare the very same object."""

    name: str
    description: str = ""
    fields: JsonSchema = field(default_factory=dict)  # property name → JSON Schema
    required: tuple[str, ...] = ()
    # Other keys allowed (a twilio action may take keys of its own).
    open: bool = False
    check: LogicCheck | None = None
    # Its failures are routine (a server down, a ref taken): the author must say where
    # the task goes.
    needs_on_error: bool = False
    # Fields naming the node the task goes to next (``go`` and ``condition``: ``to``).
    links: tuple[str, ...] = ()
    # Must be the node's last logic (``go``: nothing after it would run).
    last: bool = False
    # Opens a wait node: the task waits there until a callback releases it.
    waits: bool = False
    # Adds a reply listener (engine/two_way.py).
    listens: bool = False


NODE_ID: JsonSchema = {
    "type": "string",
    "pattern": "^[A-Za-z][A-Za-z0-9_\\-]{0,99}$",
    "description": "a node id",
}
DURATION: JsonSchema = {
    "description": "seconds, or text such as '30s', '5min', '2h', '1d'",
    "oneOf": [
        {"type": "number", "minimum": 0},
        {"type": "string", "pattern": "^\\s*\\d+(\\.\\d+)?\\s*(s|sec|m|min|h|hour|d|day)?\\s*$"},
    ],
}
DURATION_OR_TEMPLATE: JsonSchema = {"anyOf": [DURATION, {"type": "string", "pattern": "\\{\\{"}]}
DATA: JsonSchema = {"type": "object"}


def _check_call_process(spec: Mapping[str, Any], fail: LogicFail) -> None:
    if spec.get("timeout") is not None and parse_duration(spec.get("timeout")) is None:
        raise fail("must be a duration such as 30, '5min' or '1d'", "timeout")
    check_process_target(spec, fail)


WAIT_CALLBACK = LogicType("wait_callback", description="the first logic of a wait node", waits=True)
CALL_PROCESS = LogicType(
    "call_process",
    description="run another process and wait for its reply",
    fields={"process": {"type": "string"}, "data": DATA, "timeout": DURATION},
    required=("process",),
    check=_check_call_process,
    needs_on_error=True,
)
# The logics the interpreter runs itself: they shape a whole node.
CORE_LOGIC_TYPES = (WAIT_CALLBACK, CALL_PROCESS)
