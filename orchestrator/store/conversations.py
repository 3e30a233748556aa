"""Two-way SMS state (SPEC §10): tasks listening for replies, and opt-outs per pair.

A listener is (task, the person's number, our number). The oldest listener of a pair
takes the next message of that pair: ``take`` deletes it, and only the transaction whose
delete removed the row has it (several engines may race for the same listener).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from orchestrator.store import sql

Q = sql.QUERIES

# Candidates read per look-up: more than one, so a listener of a finished task (left
# behind by a repair) does not cost a round trip each.
CANDIDATES = 5


def listen(conn: Connection, task_id: str, from_number: str, to_number: str, now: float) -> bool:
    """Make the task listen for the next message from ``from_number`` to ``to_number``.
    Already listening on that pair: nothing changes (it keeps its place in the queue).
    True when a listener was added or moved to this pair."""
    row = sql.execute(conn, Q["listener_of_task"], {"task_id": task_id}).fetchone()
    if row is not None and (row[0], row[1]) == (from_number, to_number):
        return False
    if row is not None:
        sql.execute(conn, Q["delete_listener"], {"task_id": task_id})
    params = {"task_id": task_id, "from_number": from_number, "to_number": to_number}
    sql.execute(conn, Q["insert_listener"], {**params, "now": now})
    return True


def oldest(conn: Connection, from_number: str, to_number: str) -> list[str]:
    """Task ids listening on the pair, oldest first (no lock: see ``take``)."""
    params = {"from_number": from_number, "to_number": to_number, "limit": CANDIDATES}
    return [str(t) for t in sql.column(sql.execute(conn, Q["oldest_listeners"], params))]


def take(conn: Connection, task_id: str, from_number: str, to_number: str) -> bool:
    """Remove the task's listener on the pair; True only for the caller that removed it."""
    params = {"task_id": task_id, "from_number": from_number, "to_number": to_number}
    return bool(sql.execute(conn, Q["take_listener"], params).rowcount == 1)


def forget(conn: Connection, task_id: str) -> None:
    """A finished task listens no more."""
    sql.execute(conn, Q["delete_listener"], {"task_id": task_id})


def is_listened(conn: Connection, from_number: str, to_number: str) -> bool:
    return bool(oldest(conn, from_number, to_number))


# -- opt-outs ------------------------------------------------------------------------------
def opt_out(conn: Connection, recipient: str, sender: str, source: str, now: float) -> None:
    params = {"recipient": recipient, "sender": sender, "source": source, "now": now}
    sql.execute(conn, Q["insert_opt_out"], params)


def opt_in(conn: Connection, recipient: str, sender: str) -> bool:
    params = {"recipient": recipient, "sender": sender}
    return bool(sql.execute(conn, Q["delete_opt_out"], params).rowcount)


def opted_out(conn: Connection, recipient: str, senders: list[str]) -> str | None:
    """The first of ``senders`` (one or two: a number, a messaging service) the recipient
    opted out of, or None. Checked before every send."""
    if not senders:
        return None
    params = {"recipient": recipient, "a": senders[0], "b": senders[-1]}
    found = {str(s) for s in sql.column(sql.execute(conn, Q["opted_out"], params))}
    return next((s for s in senders if s in found), None)


def list_opt_outs(
    conn: Connection, *, recipient: str | None = None, sender: str | None = None, limit: int = 500
) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"limit": limit}
    filters = []
    for name, value in (("recipient", recipient), ("sender", sender)):
        if value:
            filters.append(Q[f"list_opt_outs_{name}"].text)
            params[name] = value
    stmt = Q["list_opt_outs"].fill(filters=" ".join(filters))
    return sql.mappings(sql.execute(conn, stmt, params))
