"""The callback inbox: every webhook call is stored here first, then applied.
SQL: store/sql/queries.sql."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from orchestrator.store import sql
from orchestrator.store.records import CallbackRecord, dumps

Q = sql.QUERIES


def _records(cursor: object) -> list[CallbackRecord]:
    return [CallbackRecord.from_mapping(m) for m in sql.mappings(cursor)]


def unsettled_for_task(
    conn: Connection, task_id: str, process_id: int, ref: str | None
) -> list[CallbackRecord]:
    """Callbacks still waiting for this task (by its id, or its ref), whatever node they
    were meant for, oldest first."""
    if ref is None:
        return _records(sql.execute(conn, Q["unsettled_by_task"], {"task_id": task_id}))
    params = {"task_id": task_id, "process_id": process_id, "ref": ref}
    return _records(sql.execute(conn, Q["unsettled_for_task"], params))


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
    status: str = "new",
    applied_at: float | None = None,
    applied_task_id: str | None = None,
) -> int | None:
    """Store a callback; None when it duplicates one already stored (same dedupe key or
    idempotency token) — the caller acknowledges it and nothing else happens. Stored
    ``new`` unless its delivery has settled it already (``status`` as set_status sets)."""
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
        "status": status,
        "applied_at": applied_at,
        "applied_task_id": applied_task_id,
    }
    row = sql.execute(conn, Q["insert_callback"], values).fetchone()
    return int(row[0]) if row else None


def new_callbacks(conn: Connection, limit: int) -> list[CallbackRecord]:
    """Callbacks not yet looked at, oldest first (each is then delivered in its own
    transaction, which locks the task before the callback, and moves the callback on
    only if it is still unsettled: set_status)."""
    return _records(sql.execute(conn, Q["new_callbacks"], {"limit": limit}))


def get_new(conn: Connection, callback_id: int) -> CallbackRecord | None:
    row = sql.first(sql.execute(conn, Q["new_callback"], {"callback_id": callback_id}))
    return CallbackRecord.from_mapping(row) if row else None


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
    return bool(sql.execute(conn, Q["set_callback_status"], values).rowcount == 1)


def counts(conn: Connection) -> dict[str, int]:
    return {s: int(n) for s, n in sql.execute(conn, Q["callback_counts"]).fetchall()}


def lock_new(conn: Connection, callback_id: int) -> bool:
    """Lock a callback still new (PostgreSQL: the row, until commit); False when another
    worker has it or has settled it. Incoming messages are claimed this way before their
    task is known."""
    params = {"callback_id": callback_id}
    return sql.execute(conn, Q["lock_new_callback"], params, lock=True).fetchone() is not None


def readdress(
    conn: Connection, callback_id: int, *, form: str, task_id: str, payload: dict[str, Any]
) -> None:
    """Turn a locked new callback into one for ``task_id`` (any of its wait nodes). The
    row keeps its process and dedupe key: a retry of the same message stays a duplicate."""
    params = {"callback_id": callback_id, "form": form, "task_id": task_id}
    sql.execute(conn, Q["readdress_callback"], {**params, "payload": dumps(payload)})


def delete_ids(conn: Connection, ids: list[int]) -> int:
    """Delete these callbacks; how many ids were given."""
    if ids:
        stmt = Q["delete_callbacks"].fill(ids=sql.marks("i", len(ids)))
        sql.execute(conn, stmt, sql.numbered("i", ids))
    return len(ids)


def _ids(conn: Connection, query: str, params: dict[str, Any]) -> list[int]:
    return [int(i) for i in sql.column(sql.execute(conn, Q[query], params))]


def purge_old_orphans(conn: Connection, received_before: float, limit: int) -> int:
    """Delete up to ``limit`` orphans (callbacks that found no task: pending, never
    matched to one, see engine/orphans.py) received before the cutoff; how many went."""
    params = {"received_before": received_before, "limit": limit}
    return delete_ids(conn, _ids(conn, "old_orphan_ids", params))


def trim_orphans(conn: Connection, keep: int, limit: int) -> int:
    """Delete up to ``limit`` of the oldest orphans beyond the newest ``keep``."""
    newest_dropped = sql.scalar(sql.execute(conn, Q["newest_dropped_orphan"], {"keep": keep}))
    if newest_dropped is None:
        return 0
    params = {"newest": newest_dropped, "limit": limit}
    return delete_ids(conn, _ids(conn, "orphan_ids_up_to", params))


def orphan_count(conn: Connection) -> int:
    return int(sql.scalar(sql.execute(conn, Q["orphan_count"])))
