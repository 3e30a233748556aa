"""The task size limit (Settings.max_task_bytes), checked after every step.

The API refuses oversize task data when a task is created; steps could still grow it
(``set_param`` stored 30 MB). The interpreter checks each step's result here: a result
over the limit is not kept and the task escalates with TASK_SIZE_OVERFLOW. (A reply is
checked where it is merged into its caller, ``rpc_task_size_overflow``; a callback where
it is merged into its task, see deliveries._release.)
"""

from __future__ import annotations

from typing import Any

from orchestrator.engine.steps import StepResult
from orchestrator.store.records import dumps

TASK_SIZE_OVERFLOW = "task_size_overflow_limit"


def oversize_part(result: StepResult, limit: int) -> str | None:
    """What of a step's result is over ``limit`` bytes as stored, if anything."""
    parts: list[tuple[str, dict[str, Any]]] = [("the task's data", result.data)]
    parts += [("the data of a task it creates", c.data) for c in result.copies]
    parts += [("the data it sends to another task", m.data) for m in result.modifications]
    for what, data in parts:
        if len(dumps(data).encode()) > limit:
            return what
    return None
