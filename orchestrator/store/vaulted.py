"""Every value stored encrypted with the server secret, for re-encryption on rotation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import Column, Connection, Table, select, update

from orchestrator.store.tables import api_keys, callbacks, effects, tasks, twilio_accounts

# (table, key column, encrypted column). Callback payloads are JSON with one sealed field.
_COLUMNS: list[tuple[Table, Column[str], Column[str]]] = [
    (twilio_accounts, twilio_accounts.c.account_sid, twilio_accounts.c.token_encrypted),
    (api_keys, api_keys.c.login, api_keys.c.secret_encrypted),
    (tasks, tasks.c.id, tasks.c.secrets),
]


@dataclass(frozen=True)
class Stored:
    table: str
    key: str
    value: str  # the encrypted text; for callbacks and effects, the whole JSON document


def stored_values(conn: Connection, sealed_marker: str) -> Iterator[Stored]:
    for table, key, column in _COLUMNS:
        for row in conn.execute(select(key, column).where(column.is_not(None))):
            yield Stored(table.name, str(row[0]), row[1])
    # Only callbacks still to be applied are read again; applied ones are history.
    unapplied = select(callbacks.c.id, callbacks.c.payload).where(
        callbacks.c.status.in_(("new", "pending")),
        callbacks.c.payload.contains(sealed_marker),
    )
    for row in conn.execute(unapplied):
        yield Stored("callbacks", str(row[0]), row[1])
    # Effects' results with sealed answer fields (reused when a step is retried).
    sealed = select(effects.c.task_id, effects.c.step, effects.c.logic_index, effects.c.result)
    for effect in conn.execute(sealed.where(effects.c.result.contains(sealed_marker))):
        task_id, step, index, result = effect
        yield Stored("effects", f"{task_id}:{step}:{index}", result)


def replace_value(conn: Connection, item: Stored, new_value: str) -> bool:
    """Swap the value if nobody changed it meanwhile (False: leave it to the next run)."""
    if item.table == "callbacks":
        stmt = (
            update(callbacks)
            .where(callbacks.c.id == int(item.key), callbacks.c.payload == item.value)
            .values(payload=new_value)
        )
        return conn.execute(stmt).rowcount == 1
    if item.table == "effects":
        task_id, step, index = item.key.rsplit(":", 2)
        stmt = (
            update(effects)
            .where(
                effects.c.task_id == task_id,
                effects.c.step == int(step),
                effects.c.logic_index == int(index),
                effects.c.result == item.value,
            )
            .values(result=new_value)
        )
        return conn.execute(stmt).rowcount == 1
    for table, key, column in _COLUMNS:
        if table.name == item.table:
            stmt = (
                update(table)
                .where(key == item.key, column == item.value)
                .values({column.name: new_value})
            )
            return conn.execute(stmt).rowcount == 1
    raise ValueError(f"unknown table {item.table}")
