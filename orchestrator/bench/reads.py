"""Every query ``orchestrator bench`` makes: its tasks' progress and latencies, and
PostgreSQL's statistics views. The bench reads nothing else from the database."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, func, select, text

from orchestrator.store.db import Database
from orchestrator.store.tables import processes, tasks

BENCH_PROCESS = "sending-sms"
# pg_stat_user_tables columns the bench reports per table.
TABLE_COLUMNS = ("n_tup_ins", "n_tup_upd", "n_tup_hot_upd", "n_tup_del", "seq_scan", "idx_scan")


@dataclass(frozen=True)
class Finished:
    """The bench tasks finished in a run: each one's submit-to-final latency, when the
    first was created and the last finished, and how many ended in each outcome."""

    latencies: list[float]
    first: float
    last: float
    outcomes: dict[str, int]


def _process_id(conn: Connection) -> int:
    found = conn.execute(select(processes.c.id).where(processes.c.slug == BENCH_PROCESS))
    return int(found.scalar_one())


def count_in_state(db: Database, state: str, since: float = 0.0) -> int:
    """Bench tasks in ``state`` created since ``since`` (earlier runs' tasks do not count)."""
    with db.read() as conn:
        process_id = _process_id(conn)
        counted = conn.execute(
            select(func.count())
            .select_from(tasks)
            .where(
                tasks.c.process_id == process_id,
                tasks.c.state == state,
                tasks.c.created_at >= since,
            )
        )
        return int(counted.scalar_one())


def finished_since(db: Database, since: float) -> Finished:
    with db.read() as conn:
        process_id = _process_id(conn)
        rows = conn.execute(
            select(tasks.c.created_at, tasks.c.finished_at, tasks.c.outcome).where(
                tasks.c.process_id == process_id,
                tasks.c.finished_at.is_not(None),
                tasks.c.created_at >= since,
            )
        ).all()
    outcomes: dict[str, int] = {}
    for _c, _f, outcome in rows:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return Finished(
        latencies=[finished - created for created, finished, _o in rows],
        first=min(created for created, _f, _o in rows) if rows else 0.0,
        last=max(finished for _c, finished, _o in rows) if rows else 0.0,
        outcomes=outcomes,
    )


def pg_counters(db: Database) -> dict[str, int]:
    """This database's transactions (``xact_commit``, ``xact_rollback``) and, per user
    table, ``<table>.<column>`` for each of TABLE_COLUMNS."""
    out: dict[str, int] = {}
    with db.read() as conn:
        row = conn.execute(
            text(
                "SELECT xact_commit, xact_rollback FROM pg_stat_database "
                "WHERE datname = current_database()"
            )
        ).one()
        out["xact_commit"], out["xact_rollback"] = int(row[0]), int(row[1])
        cols = ", ".join(f"coalesce({c}, 0)" for c in TABLE_COLUMNS)
        for r in conn.execute(text(f"SELECT relname, {cols} FROM pg_stat_user_tables")):
            for col, value in zip(TABLE_COLUMNS, r[1:], strict=True):
                out[f"{r[0]}.{col}"] = int(value)
    return out


def pg_backends(db: Database) -> list[tuple[int, bool]]:
    """(pid, shared) for this database's backends other than the caller's own, and for
    PostgreSQL's shared processes (WAL writer, checkpointer…: ``shared`` is True)."""
    with db.read() as conn:
        rows = conn.execute(
            text(
                "SELECT pid, datname IS NULL FROM pg_stat_activity "
                "WHERE (datname = current_database() OR datname IS NULL) "
                "AND pid <> pg_backend_pid()"
            )
        ).all()
    return [(int(pid), bool(shared)) for pid, shared in rows]
