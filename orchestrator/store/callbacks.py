"""The callback inbox: every webhook call is stored here first, then applied."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, delete, select

from orchestrator.store import sql
from orchestrator.store.records import CallbackRecord, dumps
from orchestrator.store.tables import callbacks

# Hot statements: plain SQL on the driver (see store/sql.py).
_COLUMNS = (
    "id, process_id, node_id, form, ref, task_id, dedupe_key, idem_token, payload, "
    "source_ip, received_at, status, applied_at, applied_task_id"
)
_INSERT = sql.Statement(
    "INSERT INTO callbacks (process_id, node_id, form, ref, task_id, dedupe_key, idem_token, "
    "payload, source_ip, received_at, status) VALUES (:process_id, :node_id, :form, :ref, "
    ":task_id, :dedupe_key, :idem_token, :payload, :source_ip, :received_at, 'new') "
    "ON CONFLICT DO NOTHING RETURNING id"
)
_SET_STATUS = sql.Statement(
    "UPDATE callbacks SET status = :status, applied_at = :applied_at, "
    "applied_task_id = :applied_task_id WHERE id = :w_id AND status IN ('new', 'pending')"
)
_GET_NEW = sql.Statement(
    f"SELECT {_COLUMNS} FROM callbacks WHERE id = :callback_id AND status = 'new'"
)
_NEW_IDS = sql.Statement("SELECT id FROM callbacks WHERE status = 'new' ORDER BY id LIMIT :limit")
_UNSETTLED = "status IN ('new', 'pending')"
_PENDING_BY_TASK = sql.Statement(
    f"SELECT {_COLUMNS} FROM callbacks WHERE {_UNSETTLED} AND task_id = :task_id "
    "AND node_id IN (:node_id, '*') ORDER BY id"
)
# By task id or by ref: a UNION, so each half uses its own index (an OR made SQLite scan
# every unsettled callback, on each entry into a wait node).
_BY_TASK = f"SELECT {_COLUMNS} FROM callbacks WHERE {_UNSETTLED} AND task_id = :task_id"
_BY_REF = (
    f"SELECT {_COLUMNS} FROM callbacks WHERE {_UNSETTLED} "
    "AND process_id = :process_id AND ref = :ref"
)
_AT_NODE = " AND node_id IN (:node_id, '*')"
_PENDING_BY_TASK_OR_REF = sql.Statement(
    f"{_BY_TASK}{_AT_NODE} UNION {_BY_REF}{_AT_NODE} ORDER BY id"
)
_UNSETTLED_FOR_TASK = sql.Statement(f"{_BY_TASK} UNION {_BY_REF} ORDER BY id")


def _records(cursor: object) -> list[CallbackRecord]:
    return [CallbackRecord.from_mapping(m) for m in sql.mappings(cursor)]


def unsettled_for_task(
    conn: Connection, task_id: str, process_id: int, ref: str | None
) -> list[CallbackRecord]:
    """Callbacks still waiting for this task, whatever node they were meant for."""
    params = {"task_id": task_id, "process_id": process_id, "ref": ref}
    return _records(sql.execute(conn, _UNSETTLED_FOR_TASK, params))


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
    }
    row = sql.execute(conn, _INSERT, values).fetchone()
    return int(row[0]) if row else None


def new_ids(conn: Connection, limit: int) -> list[int]:
    """Callbacks not yet looked at, oldest first (each is then delivered in its own
    transaction, which locks the task before the callback)."""
    return [int(r[0]) for r in sql.execute(conn, _NEW_IDS, {"limit": limit}).fetchall()]


def get_new(conn: Connection, callback_id: int) -> CallbackRecord | None:
    row = sql.first(sql.execute(conn, _GET_NEW, {"callback_id": callback_id}))
    return CallbackRecord.from_mapping(row) if row else None


def pending_for_task(
    conn: Connection, task_id: str, process_id: int, ref: str | None, node_id: str
) -> list[CallbackRecord]:
    """Callbacks that arrived for this task before it was ready for them, oldest first."""
    params: dict[str, Any] = {"task_id": task_id, "node_id": node_id}
    stmt = _PENDING_BY_TASK
    if ref is not None:
        stmt = _PENDING_BY_TASK_OR_REF
        params.update(process_id=process_id, ref=ref)
    return _records(sql.execute(conn, stmt, params))


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
    return bool(sql.execute(conn, _SET_STATUS, values).rowcount == 1)


def counts(conn: Connection) -> dict[str, int]:
    from sqlalchemy import func

    stmt = select(callbacks.c.status, func.count()).group_by(callbacks.c.status)
    return {s: int(n) for s, n in conn.execute(stmt)}


def lock_new(conn: Connection, callback_id: int) -> bool:
    """Lock a callback still new (PostgreSQL: the row, until commit); False when another
    worker has it or has settled it. Incoming messages are claimed this way before their
    task is known."""
    stmt = select(callbacks.c.id).where(callbacks.c.id == callback_id, callbacks.c.status == "new")
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return conn.execute(stmt).first() is not None


def readdress(
    conn: Connection, callback_id: int, *, form: str, task_id: str, payload: dict[str, Any]
) -> None:
    """Turn a locked new callback into one for ``task_id`` (any of its wait nodes). The
    row keeps its process and dedupe key: a retry of the same message stays a duplicate."""
    conn.execute(
        callbacks.update()
        .where(callbacks.c.id == callback_id)
        .values(form=form, task_id=task_id, node_id="*", payload=dumps(payload))
    )


def _orphan() -> Any:
    """A callback that found no task: pending, never matched to one (engine/orphans.py)."""
    c = callbacks.c
    return and_(c.status == "pending", c.task_id.is_(None), c.applied_task_id.is_(None))


def _delete_ids(conn: Connection, ids: list[int]) -> int:
    if ids:
        conn.execute(delete(callbacks).where(callbacks.c.id.in_(ids)))
    return len(ids)


def purge_old_orphans(conn: Connection, received_before: float, limit: int) -> int:
    """Delete up to ``limit`` orphans received before the cutoff; how many went."""
    stmt = (
        select(callbacks.c.id)
        .where(_orphan(), callbacks.c.received_at < received_before)
        .order_by(callbacks.c.id)
        .limit(limit)
    )
    return _delete_ids(conn, [int(r[0]) for r in conn.execute(stmt)])


def trim_orphans(conn: Connection, keep: int, limit: int) -> int:
    """Delete up to ``limit`` of the oldest orphans beyond the newest ``keep``."""
    newest_dropped = conn.execute(
        select(callbacks.c.id)
        .where(_orphan())
        .order_by(callbacks.c.id.desc())
        .offset(keep)
        .limit(1)
    ).scalar()
    if newest_dropped is None:
        return 0
    stmt = (
        select(callbacks.c.id)
        .where(_orphan(), callbacks.c.id <= newest_dropped)
        .order_by(callbacks.c.id)
        .limit(limit)
    )
    return _delete_ids(conn, [int(r[0]) for r in conn.execute(stmt)])


def orphan_count(conn: Connection) -> int:
    from sqlalchemy import func

    return int(
        conn.execute(select(func.count()).select_from(callbacks).where(_orphan())).scalar_one()
    )
