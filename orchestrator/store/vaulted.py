"""Every value stored encrypted with the server secret, for re-encryption on rotation.
SQL: store/sql/queries.sql."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import Connection

from orchestrator.store import sql

Q = sql.QUERIES

# Table -> (the query reading its sealed values as (key, value), the one replacing one).
# Callback payloads and effect results are JSON documents with sealed fields.
_COLUMNS = {
    "twilio_accounts": ("sealed_account_tokens", "replace_account_token"),
    "api_keys": ("sealed_api_key_secrets", "replace_api_key_secret"),
    "tasks": ("sealed_task_secrets", "replace_task_secrets"),
}


@dataclass(frozen=True)
class Stored:
    table: str
    key: str
    value: str  # the encrypted text; for callbacks and effects, the whole JSON document


def stored_values(conn: Connection, sealed_marker: str) -> Iterator[Stored]:
    for table, (read, _replace) in _COLUMNS.items():
        for key, value in sql.execute(conn, Q[read]).fetchall():
            yield Stored(table, str(key), value)
    marker = {"pattern": sql.like_pattern(sealed_marker)}
    # Only callbacks still to be applied are read again; applied ones are history.
    for key, value in sql.execute(conn, Q["sealed_callback_payloads"], marker).fetchall():
        yield Stored("callbacks", str(key), value)
    # Effects' results with sealed answer fields (reused when a step is retried).
    for task_id, step, index, result in sql.execute(
        conn, Q["sealed_effect_results"], marker
    ).fetchall():
        yield Stored("effects", f"{task_id}:{step}:{index}", result)


def replace_value(conn: Connection, item: Stored, new_value: str) -> bool:
    """Swap the value if nobody changed it meanwhile (False: leave it to the next run)."""
    swap = {"old": item.value, "new": new_value}
    if item.table == "callbacks":
        params = {**swap, "id": int(item.key)}
        return bool(sql.execute(conn, Q["replace_callback_payload"], params).rowcount == 1)
    if item.table == "effects":
        task_id, step, index = item.key.rsplit(":", 2)
        params = {**swap, "task_id": task_id, "step": int(step), "logic_index": int(index)}
        return bool(sql.execute(conn, Q["replace_effect_result"], params).rowcount == 1)
    if item.table in _COLUMNS:
        replace = Q[_COLUMNS[item.table][1]]
        return bool(sql.execute(conn, replace, {**swap, "key": item.key}).rowcount == 1)
    raise ValueError(f"unknown table {item.table}")
