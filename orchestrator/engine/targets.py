"""The task a ``modify_task`` logic sends its data to (looked up by id or ref), and the
process a ``copy_task`` starts a task in (once the creator's quotas allow one more).

The lookups normally run in the transaction that commits the step (``transitions``), so
a round trip spends no read transaction of its own on it; when it fails there, the step
is run again with the lookup up front (``StepResult.careful``), where a failure takes
the logic's error path as usual.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from orchestrator.engine.quotas import exceeded
from orchestrator.engine.runtime import NotFound, Runtime
from orchestrator.engine.steps import LogicFailure
from orchestrator.store import tasks as task_store
from orchestrator.store.records import TaskRecord


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
    found = modified_task(conn, rt, process_key, task_id, ref)
    return found.process_id, found.id


def modified_task(
    conn: Connection,
    rt: Runtime,
    process_key: str,
    task_id: Any,
    ref: Any,
    *,
    for_update: bool = False,
) -> TaskRecord:
    """The unfinished task addressed; LogicFailure if none. ``for_update``: locked (on
    PostgreSQL), so the step's commit delivers to it without reading it again."""
    try:
        proc = rt.process(conn, process_key)
    except NotFound as exc:
        raise not_found_process(process_key) from exc
    found = (
        task_store.get_task(conn, str(task_id), for_update=for_update)
        if task_id
        else task_store.find_by_ref(conn, proc.id, str(ref), for_update=for_update)
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
    return found


def copy_target(
    conn: Connection,
    rt: Runtime,
    process_key: str,
    ref: str | None,
    creator: TaskRecord,
    pending: int,
) -> tuple[int, int, str]:
    """(process id, version id, start node) a copy_task or call_process starts a task
    in, once the creator's quotas allow one more task (engine/quotas.py)."""
    own = rt.definition(creator.version_id, conn)[2]
    refused = exceeded(conn, rt.settings, own, creator, pending)
    if refused is not None:
        raise LogicFailure(refused)
    try:
        proc = rt.process(conn, process_key)
    except NotFound as exc:
        raise not_found_process(process_key) from exc
    if ref is not None and task_store.active_ref_taken(conn, proc.id, ref):
        raise LogicFailure(
            {
                "error": "not_unical_ref",
                "code": "not_unical_ref",
                "message": f"ref {ref!r} is taken in {proc.slug}",
            }
        )
    _pid, _v, definition = rt.definition(proc.version_id, conn)
    return proc.id, proc.version_id, definition.start
