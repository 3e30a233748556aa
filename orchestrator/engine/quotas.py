"""Quotas on tasks that create tasks, so a process that copies or calls itself without end
stops instead of filling the database and starving every other task.

A task created over the API roots a chain; every task created from it (``copy_task``,
``call_process``, a Twilio follow) carries the root and one more generation. Before a
``copy_task`` or ``call_process`` creates a task:

- its generation may not pass the depth quota (a task copying itself once per step
  stops there), and
- its chain may not hold more than the chain quota (a task copying itself twice per step
  doubles each generation: the depth alone would allow billions).

Otherwise the creating logic fails with ``TASK_QUOTA_EXCEEDED`` and the task takes its
error path (an escalation) like any failed logic. The quotas are ``ORCH_MAX_TASK_DEPTH``
and ``ORCH_MAX_CHAIN_TASKS``; a process file raises or lowers them for its own tasks with
``limits: {depth: N, chain_tasks: N}``. Tasks created together in one step are counted
together; steps of one chain running at once count before any of them commits, so they
may overshoot the chain quota by what they create at once (bounded by the engines'
concurrency), never more. The engine runs a step's copies only as far as its
concurrency allows (``Worker._take_on``), so a chain under its quota cannot crowd out
older work either.
"""

from __future__ import annotations

from sqlalchemy import Connection

from orchestrator.config import Settings
from orchestrator.engine.definition import ProcessDefinition
from orchestrator.store import tasks as task_store
from orchestrator.store.records import TaskRecord

CODE = "TASK_QUOTA_EXCEEDED"


def exceeded(
    conn: Connection,
    settings: Settings,
    definition: ProcessDefinition,
    task: TaskRecord,
    pending: int,
) -> dict[str, str] | None:
    """The error fields (TASK_QUOTA_EXCEEDED) when ``task`` may not create one more task
    besides the ``pending`` ones it creates in the same step; None when it may."""
    depth = definition.limits.get("depth", settings.max_task_depth)
    if task.generation + 1 > depth:
        return _fields(
            f"a task {task.generation + 1} creations away from the task that started its "
            f"chain would pass the depth quota of {depth}"
        )
    root = task.root_id or task.id
    chain = definition.limits.get("chain_tasks", settings.max_chain_tasks)
    size = task_store.chain_size(conn, root, chain) + pending
    if size + 1 > chain:
        return _fields(f"the chain started by task {root} holds {size} tasks; its quota is {chain}")
    return None


def _fields(message: str) -> dict[str, str]:
    return {"error": CODE, "code": CODE, "message": message}
