"""The callback inbox: every webhook call is stored here first, then applied."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, bindparam, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from orchestrator.store.records import CallbackRecord, dumps
from orchestrator.store.tables import callbacks

# Built once (see store/tasks.py for why).
_INSERT_PG = pg_insert(callbacks).on_conflict_do_nothing().returning(callbacks.c.id)
_INSERT_SQLITE = sqlite_insert(callbacks).on_conflict_do_nothing().returning(callbacks.c.id)
_SET_STATUS = update(callbacks).where(
    callbacks.c.id == bindparam("w_id"), callbacks.c.status.in_(("new", "pending"))
)
_GET_NEW = select(callbacks).where(
    callbacks.c.id == bindparam("callback_id"), callbacks.c.status == "new"
)
_PENDING_BY_TASK = (
    select(callbacks)
    .where(
        callbacks.c.status.in_(("new", "pending")),
        callbacks.c.task_id == bindparam("task_id"),
        callbacks.c.node_id.in_((bindparam("node_id"), "*")),
    )
    .order_by(callbacks.c.id)
)
_PENDING_BY_TASK_OR_REF = (
    select(callbacks)
    .where(
        callbacks.c.status.in_(("new", "pending")),
        or_(
            callbacks.c.task_id == bindparam("task_id"),
            (callbacks.c.process_id == bindparam("process_id"))
            & (callbacks.c.ref == bindparam("ref")),
        ),
        callbacks.c.node_id.in_((bindparam("node_id"), "*")),
    )
    .order_by(callbacks.c.id)
)


_UNSETTLED_FOR_TASK = (
    select(callbacks)
    .where(
        callbacks.c.status.in_(("new", "pending")),
        or_(
            callbacks.c.task_id == bindparam("task_id"),
            (callbacks.c.process_id == bindparam("process_id"))
            & (callbacks.c.ref == bindparam("ref")),
        ),
    )
    .order_by(callbacks.c.id)
)


def unsettled_for_task(
    conn: Connection, task_id: str, process_id: int, ref: str | None
) -> list[CallbackRecord]:
    """Callbacks still waiting for this task, whatever node they were meant for."""
    params = {"task_id": task_id, "process_id": process_id, "ref": ref}
    return [CallbackRecord.from_row(r) for r in conn.execute(_UNSETTLED_FOR_TASK, params)]


def insert_callback(
    conn: Connection,
    *,
    process_id: int,
    node_id: str,
    form: str,
    payload: dict[str, Any],
    received_at: float,
    ref: str | None = None,
    task_id: str | None = None,
    dedupe_key: str | None = None,
    idem_token: str | None = None,
    source_ip: str | None = None,
) -> int | None:
    """Store a callback; None when it duplicates one already stored (same dedupe key or
    idempotency token) — the caller acknowledges it and nothing else happens."""
    values = {
        "process_id": process_id,
        "node_id": node_id,
        "form": form,
        "ref": ref,
        "task_id": task_id,
        "dedupe_key": dedupe_key,
        "idem_token": idem_token,
        "payload": dumps(payload),
        "source_ip": source_ip,
        "received_at": received_at,
        "status": "new",
    }
    stmt = _INSERT_PG if conn.dialect.name == "postgresql" else _INSERT_SQLITE
    row = conn.execute(stmt, values).first()
    return int(row[0]) if row else None


def new_ids(conn: Connection, limit: int) -> list[int]:
    """Callbacks not yet looked at, oldest first (each is then delivered in its own
    transaction, which locks the task before the callback)."""
    stmt = select(callbacks.c.id).where(callbacks.c.status == "new").order_by(callbacks.c.id)
    return [int(r[0]) for r in conn.execute(stmt.limit(limit))]


def get_new(conn: Connection, callback_id: int) -> CallbackRecord | None:
    row = conn.execute(_GET_NEW, {"callback_id": callback_id}).first()
    return CallbackRecord.from_row(row) if row else None


def pending_for_task(
    conn: Connection, task_id: str, process_id: int, ref: str | None, node_id: str
) -> list[CallbackRecord]:
    """Callbacks that arrived for this task before it was ready for them, oldest first."""
    params: dict[str, Any] = {"task_id": task_id, "node_id": node_id}
    stmt = _PENDING_BY_TASK
    if ref is not None:
        stmt = _PENDING_BY_TASK_OR_REF
        params.update(process_id=process_id, ref=ref)
    return [CallbackRecord.from_row(r) for r in conn.execute(stmt, params)]


def set_status(
    conn: Connection, callback_id: int, status: str, *, now: float, task_id: str | None = None
) -> bool:
    """Move a callback on from new/pending; False if another worker got there first."""
    values = {
        "w_id": callback_id,
        "status": status,
        "applied_at": now if status != "pending" else None,
        "applied_task_id": task_id,
    }
    return conn.execute(_SET_STATUS, values).rowcount == 1


def counts(conn: Connection) -> dict[str, int]:
    from sqlalchemy import func

    stmt = select(callbacks.c.status, func.count()).group_by(callbacks.c.status)
    return {s: int(n) for s, n in conn.execute(stmt)}
