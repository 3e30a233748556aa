"""External side effects, recorded before they are attempted (exactly-once sends).
SQL: store/sql/queries.sql."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Connection

from orchestrator.store import sql
from orchestrator.store.records import dumps, loads

Q = sql.QUERIES

# What a plugin writes with an effect's result, in the same transaction: a result that
# holds one of these keys is passed, under it, to the writer (the Twilio plugin tracks
# a sent message for its reconciliation sweep under "track").
ResultWriter = Callable[[Connection, Mapping[str, Any]], None]
RESULT_WRITERS: dict[str, ResultWriter] = {}

# The effects that created a provider resource (a message, a call), for created_resource.
RESOURCE_KINDS = ("twilio.create_message", "twilio.create_call")


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
    params = {**key, "kind": kind, "request": dumps(request), "now": now}
    if sql.execute(conn, Q["start_effect"], params).rowcount == 1:
        return None
    row = sql.first(sql.execute(conn, Q["effect"], key))
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
    """Store what the effect did, and what a plugin keeps with it (RESULT_WRITERS), so
    that costs no transaction of its own."""
    for key, write in RESULT_WRITERS.items():
        if result.get(key):
            write(conn, result[key])
    params = {"task_id": task_id, "step": step, "logic_index": logic_index, "now": now}
    sql.execute(conn, Q["finish_effect"], {**params, "result": dumps(result)})


def at_step(conn: Connection, task_id: str, step: int) -> list[dict[str, Any]]:
    """The effects a task's step recorded (what a repair would run again)."""
    rows = sql.mappings(sql.execute(conn, Q["effects_at_step"], {"task_id": task_id, "step": step}))
    for row in rows:
        row["request"], row["result"] = loads(row["request"]), loads(row["result"])
    return rows


_DONE_RESULTS = Q["done_effect_results"].fill(kinds=sql.marks("k", len(RESOURCE_KINDS)))


def created_resource(conn: Connection, task_id: str) -> dict[str, Any] | None:
    """The first provider resource (message or call) a task created, as its effect stored
    it (``{"message": {...}}``, secret fields sealed), or None."""
    params = {"task_id": task_id, **sql.numbered("k", RESOURCE_KINDS)}
    for text in sql.column(sql.execute(conn, _DONE_RESULTS, params)):
        result = loads(text)
        if isinstance(result, dict) and isinstance(result.get("message"), dict):
            return result
    return None


def exists(conn: Connection, task_id: str, step: int, logic_index: int) -> bool:
    """Whether this effect was begun already (by an earlier run of the step)."""
    key = {"task_id": task_id, "step": step, "logic_index": logic_index}
    return sql.first(sql.execute(conn, Q["effect"], key)) is not None
