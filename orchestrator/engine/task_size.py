"""The task size limit (Settings.max_task_bytes), checked after every step.

The API refuses oversize task data when a task is created; steps could still grow it
(``set_param`` stored 30 MB). The interpreter checks each step's result here: a result
over the limit is not kept and the task escalates with TASK_SIZE_OVERFLOW. (A reply is
checked where it is merged into its caller, ``rpc_task_size_overflow``; a callback where
it is merged into its task, see deliveries._release.)
"""

from __future__ import annotations

from orchestrator.engine.steps import StepResult
from orchestrator.store.records import dumps

TASK_SIZE_OVERFLOW = "task_size_overflow_limit"


def oversize_part(result: StepResult, limit: int) -> str | None:
    """What of a step's result is over ``limit`` bytes as stored, if anything. The texts
    of the task's data and of its copies' are kept with them (``data_text``), for the
    commit to write as they are."""
    result.data_text = text = dumps(result.data)
    if _over(text, limit):
        return "the task's data"
    for copy in result.copies:
        copy.data_text = text = dumps(copy.data)
        if _over(text, limit):
            return "the data of a task it creates"
    for mod in result.modifications:
        if _over(dumps(mod.data), limit):
            return "the data it sends to another task"
    return None


def _over(text: str, limit: int) -> bool:
    # Bytes as stored (UTF-8): at most 4 per character, at least 1.
    if len(text) > limit:
        return True
    return len(text) * 4 > limit and len(text.encode()) > limit
