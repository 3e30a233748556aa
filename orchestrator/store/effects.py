"""External side effects, recorded before they are attempted (exactly-once sends)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.exc import IntegrityError

from orchestrator.store import twilio_messages
from orchestrator.store.records import dumps, loads
from orchestrator.store.tables import effects


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
    key = (
        (effects.c.task_id == task_id)
        & (effects.c.step == step)
        & (effects.c.logic_index == logic_index)
    )
    row = conn.execute(select(effects).where(key)).first()
    if row is not None:
        return {
            "status": row.status,
            "result": loads(row.result),
            "created_at": row.created_at,
            "request": loads(row.request),
        }
    try:
        with conn.begin_nested():
            conn.execute(
                effects.insert().values(
                    task_id=task_id,
                    step=step,
                    logic_index=logic_index,
                    kind=kind,
                    status="started",
                    request=dumps(request),
                    created_at=now,
                    updated_at=now,
                )
            )
    except IntegrityError:
        return begin(conn, task_id, step, logic_index, kind, request, now)
    return None


def finish(
    conn: Connection, task_id: str, step: int, logic_index: int, result: dict[str, Any], now: float
) -> None:
    """Store what the effect did. A sent message that names where its callbacks go
    (``result["track"]``) is opened for the reconciliation sweep in the same transaction,
    so tracking costs no transaction of its own."""
    if result.get("track"):
        twilio_messages.track(conn, **result["track"])
    conn.execute(
        update(effects)
        .where(
            effects.c.task_id == task_id,
            effects.c.step == step,
            effects.c.logic_index == logic_index,
        )
        .values(status="done", result=dumps(result), updated_at=now)
    )
