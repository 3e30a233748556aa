"""The task a ``modify_task`` logic sends its data to, looked up by id or ref.

The lookup normally runs in the transaction that commits the step (``transitions``), so
a round trip spends no read transaction of its own on it; when it fails there, the step
is run again with the lookup up front (``StepResult.careful``), where a failure takes
the logic's error path as usual.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from orchestrator.engine.runtime import NotFound, Runtime
from orchestrator.engine.steps import LogicFailure
from orchestrator.store import tasks as task_store


def not_found_process(process_key: str) -> LogicFailure:
    return LogicFailure(
        {
            "error": "not_found_process",
            "code": "not_found_process",
            "message": f"no process {process_key!r}",
        }
    )


def modify_target(
    conn: Connection, rt: Runtime, process_key: str, task_id: Any, ref: Any
) -> tuple[int, str]:
    """(process id, task id) of the unfinished task addressed; LogicFailure if none."""
    try:
        proc = rt.process(conn, process_key)
    except NotFound as exc:
        raise not_found_process(process_key) from exc
    found = (
        task_store.get_task(conn, str(task_id))
        if task_id
        else task_store.find_by_ref(conn, proc.id, str(ref))
    )
    if found is None or found.process_id != proc.id or found.state == "done":
        fields: dict[str, Any] = {
            "error": "not_found_task",
            "code": "not_found_task",
            "message": "there is no unfinished task with that "
            f"{'task_id' if task_id else 'ref'} in "
            f"{proc.slug}",
        }
        if found is not None and found.process_id == proc.id:
            # It exists but has ended: a process may treat that as no problem.
            fields["target_finished"] = True
        raise LogicFailure(fields)
    return proc.id, found.id
