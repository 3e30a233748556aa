"""What one step of a task produces, shared by the interpreter, the step handlers
(``engine/plugins.py``) and ``transitions.commit_step``.

These types sit apart from the interpreter so that a handler (``api_call``, a provider
plugin) can build a ``StepResult`` or raise ``LogicFailure`` without importing the
interpreter that calls it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.store.records import Event, TaskRecord

LOOP_LIMIT = 50


class StepDeferred(Exception):
    """The step cannot run yet (another worker may still be finishing it): try again at
    ``until``, keeping the lease meanwhile."""

    def __init__(self, until: float, reason: str) -> None:
        super().__init__(reason)
        self.until = until


class LogicFailure(Exception):
    """A logic failed: the task goes to the error path with these fields."""

    def __init__(self, fields: dict[str, Any]) -> None:
        super().__init__(fields.get("message", ""))
        self.fields = fields


@dataclass
class NewTask:
    process_id: int
    version_id: int
    start: str
    ref: str | None
    data: dict[str, Any]
    parent_task_id: str
    reply_to: str | None = None  # set by call_process: "task_id:step:node_id"
    data_text: str | None = None  # ``data`` as stored (JSON), once the size check encoded it
    # (process key, copies before it in the step) of a copy_task whose process and
    # quotas are checked in the step's commit: the first three fields are set there.
    check: tuple[str, int] | None = None


@dataclass
class Reply:
    """What a called task sends back to its caller (the ``reply`` logic)."""

    data: dict[str, Any]
    exception: bool = False


@dataclass
class Modification:
    process_id: int
    task_id: str
    data: dict[str, Any]
    # (process key, task id, ref) still to look up, in the step's commit: process_id
    # and task_id are then set there (engine/targets.py).
    lookup: tuple[str, Any, Any] | None = None


@dataclass
class StepResult:
    data: dict[str, Any]
    to: str | None = None  # None: the task stays in its node, waiting
    wake_at: float | None = None  # when the target (or current) node's time limit fires
    events: list[Event] = field(default_factory=list)
    copies: list[NewTask] = field(default_factory=list)
    modifications: list[Modification] = field(default_factory=list)
    effects_done: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    account_tokens: dict[str, str] = field(default_factory=dict)
    reply: Reply | None = None
    # Two-way SMS: (person's number, our number) to listen on from this step's commit
    # (expect_reply), or once the task waits in the wait_reply node it enters.
    listen: tuple[str, str] | None = None
    wait_listen: tuple[str, str] | None = None
    # Lookups made before the commit rather than in it: a step run again because one
    # failed in the commit (steps.Recheck), so the failure takes the error path.
    careful: bool = False
    # ``data`` as stored (JSON), as the size check encoded it (task_size.oversize_part):
    # the commit writes it without encoding the same data again.
    data_text: str | None = None


class Conflict(RuntimeError):
    """The task changed under us (its lease was lost); the step is abandoned. ``effects``
    carries what the abandoned step learnt from an outside call (Twilio's answer), so it
    can still be recorded."""

    def __init__(self, task_id: str) -> None:
        super().__init__(task_id)
        self.effects: list[tuple[int, dict[str, Any]]] = []
        self.step = 0  # the step those effects belong to


class Recheck(Conflict):
    """A check made in the commit (a ``modify_task`` target, a ``copy_task``'s process
    and quotas) failed: nothing was written; run the step again with its lookups up
    front (``StepResult.careful``), so the failure takes the logic's error path.
    ``effects`` as for ``Conflict``."""


def enter_waiting(task: TaskRecord, wake_at: float | None) -> None:
    """The fields of a task that enters a wait or delay node (a step's commit, or a new
    task placed in its wait node at creation)."""
    task.state = "waiting"
    task.wake_at = wake_at
    task.hops = 0
    task.lease_owner = task.lease_until = None
