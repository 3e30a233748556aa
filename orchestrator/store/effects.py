"""External side effects, recorded before they are attempted (exactly-once sends)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from orchestrator.store import sql, twilio_messages
from orchestrator.store.records import dumps, loads
from orchestrator.store.tables import effects

# Twice per message sent: plain SQL (see store/sql.py).
_KEY = "task_id = :task_id AND step = :step AND logic_index = :logic_index"
_GET = sql.Statement(f"SELECT status, result, created_at, request FROM effects WHERE {_KEY}")
_START = sql.Statement(
    "INSERT INTO effects (task_id, step, logic_index, kind, status, request, created_at, "
    "updated_at) VALUES (:task_id, :step, :logic_index, :kind, 'started', :request, :now, :now) "
    "ON CONFLICT DO NOTHING"
)
_FINISH = sql.Statement(
    f"UPDATE effects SET status = 'done', result = :result, updated_at = :now WHERE {_KEY}"
)


def begin(
    conn: Connection,
    task_id: str,
    step: int,
    logic_index: int,
    kind: str,
    request: dict[str, Any],
    now: float,
) -> dict[str, Any] | None:
    """Record that an effect is about to happen. Returns None for a first attempt, or the
    earlier record ({status, result, created_at, request}) when this step ran before."""
    key = {"task_id": task_id, "step": step, "logic_index": logic_index}
    started = sql.execute(
        conn, _START, {**key, "kind": kind, "request": dumps(request), "now": now}
    )
    if started.rowcount == 1:
        return None
    row = sql.first(sql.execute(conn, _GET, key))
    assert row is not None  # the insert conflicted with it
    return {
        "status": row["status"],
        "result": loads(row["result"]),
        "created_at": row["created_at"],
        "request": loads(row["request"]),
    }


def finish(
    conn: Connection, task_id: str, step: int, logic_index: int, result: dict[str, Any], now: float
) -> None:
    """Store what the effect did. A sent message that names where its callbacks go
    (``result["track"]``) is opened for the reconciliation sweep in the same transaction,
    so tracking costs no transaction of its own."""
    if result.get("track"):
        twilio_messages.track(conn, **result["track"])
    params = {"task_id": task_id, "step": step, "logic_index": logic_index, "now": now}
    sql.execute(conn, _FINISH, {**params, "result": dumps(result)})


def at_step(conn: Connection, task_id: str, step: int) -> list[dict[str, Any]]:
    """The effects a task's step recorded (what a repair would run again)."""
    stmt = select(effects).where(effects.c.task_id == task_id, effects.c.step == step)
    return [
        {
            "kind": r.kind,
            "status": r.status,
            "request": loads(r.request),
            "result": loads(r.result),
        }
        for r in conn.execute(stmt)
    ]


def created_resource(conn: Connection, task_id: str) -> dict[str, Any] | None:
    """The first Twilio resource (message or call) a task created, as its effect stored
    it (``{"message": {...}}``, secret fields sealed), or None."""
    stmt = (
        select(effects.c.result)
        .where(
            effects.c.task_id == task_id,
            effects.c.status == "done",
            effects.c.kind.in_(("twilio.create_message", "twilio.create_call")),
        )
        .order_by(effects.c.step, effects.c.logic_index)
    )
    for (text,) in conn.execute(stmt):
        result = loads(text)
        if isinstance(result, dict) and isinstance(result.get("message"), dict):
            return result
    return None


def exists(conn: Connection, task_id: str, step: int, logic_index: int) -> bool:
    """Whether this effect was begun already (by an earlier run of the step)."""
    key = {"task_id": task_id, "step": step, "logic_index": logic_index}
    return sql.first(sql.execute(conn, _GET, key)) is not None
