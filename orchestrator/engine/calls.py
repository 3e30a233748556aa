"""call_process / reply, the commit side: a called task's reply releases its caller.

The caller waits in its call node (state ``waiting``) from the same transaction that
creates the called task, so a reply never arrives before the caller waits. The called task
remembers ``reply_to = caller_id:caller_step:node_id``; a reply is applied only if the
caller still waits in that node at that step, so a late reply (after the caller's time
limit moved it on, even back into the same node) is recorded and changes nothing.
A called task that finishes without a ``reply`` logic replies by itself: with its data
from a success node, as an exception from an error/escalation node.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from orchestrator import secretdata
from orchestrator.engine.runtime import Runtime
from orchestrator.engine.steps import Reply
from orchestrator.store import tasks as task_store
from orchestrator.store.records import Event, TaskRecord, dumps

EXCEPTION_MESSAGE = "the called process replied with an exception"


class CallerChanged(RuntimeError):
    """The caller changed under us; the whole step is abandoned and run again."""


def send_reply(
    conn: Connection,
    rt: Runtime,
    child: TaskRecord,
    reply: Reply,
    owner: str | None,
    now: float,
) -> tuple[list[TaskRecord], Event]:
    """Apply ``reply`` to the caller of ``child`` (whose ``reply_to`` is cleared: one reply
    per call). Returns the released caller (leased to ``owner``) and the child's event."""
    assert child.reply_to is not None
    caller_id, step, node_id = child.reply_to.split(":", 2)
    child.reply_to = None
    caller = task_store.get_task(conn, caller_id, for_update=True)
    if (
        caller is None
        or caller.state != "waiting"
        or caller.node_id != node_id
        or caller.step != int(step)
    ):
        late = {"caller_task_id": caller_id, "reason": "the caller no longer waits for it"}
        return [], Event("reply_late", child.node_id, None, late)
    plain, _hidden = secretdata.split(dict(reply.data))
    data = {**caller.data, **plain}
    entry = "resume"
    if reply.exception:
        data.update(
            error="rpc_exception",
            code=str(plain.get("code") or "rpc_exception"),
            message=str(plain.get("message") or EXCEPTION_MESSAGE),
        )
        entry = "rpc_error"
    limit = rt.settings.max_task_bytes
    if len(dumps(data).encode()) > limit:
        data = dict(caller.data)
        data.update(
            error="rpc_task_size_overflow",
            code="rpc_task_size_overflow",
            message=f"the reply would make the task larger than {limit} bytes",
        )
        entry = "rpc_error"
    expected = caller.rev
    caller.data = data
    caller.state, caller.entry, caller.wake_at, caller.hops = "active", entry, None, 0
    if owner is None:
        caller.lease_owner = caller.lease_until = None
    else:
        caller.lease_owner, caller.lease_until = owner, now + rt.settings.lease_seconds
    caller.updated_at = now
    detail: dict[str, Any] = {
        "from_task_id": child.id,
        "exception": reply.exception,
        "fields": sorted(plain),
    }
    task_store.add_events(conn, caller.id, [Event("reply", node_id, None, detail)], now)
    if not task_store.save_task(conn, caller, expected):
        raise CallerChanged(caller.id)
    sent = {"caller_task_id": caller.id, "exception": reply.exception}
    return [caller], Event("reply", child.node_id, None, sent)
