"""Where ``orchestrator bench``'s time goes: counted SQL per round trip, and PostgreSQL's
own counters and CPU.

- SQL statements and transactions are counted inside the server processes
  (store/sqlcount.py, switched on with ORCH_SQL_COUNTS) and read before and after the run.
- On PostgreSQL, ``pg_stat_database`` and ``pg_stat_user_tables`` are read before and
  after, and the CPU of the bench database's backends is taken from /proc (PostgreSQL
  runs on this machine in the bench; elsewhere that line says n/a).
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import text

from orchestrator.store import sqlcount
from orchestrator.store.db import Database

# How long an idle PostgreSQL 15 backend may keep its statistics before reporting them
# (PGSTAT_IDLE_INTERVAL, 10 s), plus a margin.
PG_STATS_DELAY = 11.0
SHAPES_SHOWN = 16  # the most frequent transaction shapes printed


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (NaN: not readable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def total_counts(directory: str, pids: set[str]) -> dict[str, int]:
    """The sum over the processes ``pids`` of their statement and transaction counts."""
    out: dict[str, int] = {}
    for pid, counts in sqlcount.read_counts(directory).items():
        if pid not in pids:
            continue
        for key, n in counts.items():
            out[key] = out.get(key, 0) + n
    return out


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: n - before.get(k, 0) for k, n in after.items() if n - before.get(k, 0)}


def sql_report(counts: dict[str, int], round_trips: int) -> list[str]:
    """Lines: statements and transactions per round trip, then the statements by kind."""
    rt = max(round_trips, 1)
    stmts = {k[5:]: n for k, n in counts.items() if k.startswith("stmt ")}
    txns = {k[4:]: n for k, n in counts.items() if k.startswith("txn ")}
    lines = [
        f"sql per rt     {sum(stmts.values()) / rt:.1f} statements, "
        f"{txns.get('commit write', 0) / rt:.1f} write + {txns.get('commit read', 0) / rt:.1f} "
        f"read transactions committed, {txns.get('rollback', 0) / rt:.1f} rolled back, "
        f"{txns.get('savepoint', 0) / rt:.1f} savepoints (counted in the server processes)"
    ]
    shapes = sorted(
        ((k[6:], n) for k, n in counts.items() if k.startswith("shape ")), key=lambda kv: -kv[1]
    )
    top = sorted(stmts.items(), key=lambda kv: -kv[1])
    for i in range(0, len(top), 4):
        lines.append(
            "  by kind      " + ", ".join(f"{kind} {n / rt:.1f}" for kind, n in top[i : i + 4])
        )
    for shape, n in shapes[:SHAPES_SHOWN]:
        lines.append(f"  transaction  {n / rt:4.1f} x {shape}")
    return lines


class PgWatch:
    """PostgreSQL's counters for the bench database, and its backends' CPU."""

    TABLE_COLUMNS = ("n_tup_ins", "n_tup_upd", "n_tup_hot_upd", "n_tup_del", "seq_scan", "idx_scan")

    def __init__(self, db: Database) -> None:
        self.db = db
        self.enabled = db.is_postgres
        self.first: dict[int, float] = {}  # backend pid -> its CPU when first seen
        self.last: dict[int, float] = {}
        self.shared_first: dict[int, float] = {}
        self.shared_last: dict[int, float] = {}
        self._started = False

    def counters(self) -> dict[str, int]:
        if not self.enabled:
            return {}
        out: dict[str, int] = {}
        with self.db.read() as conn:
            row = conn.execute(
                text(
                    "SELECT xact_commit, xact_rollback FROM pg_stat_database "
                    "WHERE datname = current_database()"
                )
            ).one()
            out["xact_commit"], out["xact_rollback"] = int(row[0]), int(row[1])
            cols = ", ".join(f"coalesce({c}, 0)" for c in self.TABLE_COLUMNS)
            for r in conn.execute(text(f"SELECT relname, {cols} FROM pg_stat_user_tables")):
                for col, value in zip(self.TABLE_COLUMNS, r[1:], strict=True):
                    out[f"{r[0]}.{col}"] = int(value)
        return out

    def sample_cpu(self) -> None:
        """Record the CPU of this database's backends (not the bench's own connection) and
        of PostgreSQL's shared processes (WAL writer, checkpointer, ...). A backend first
        seen after the first sample started during the run: all its CPU counts."""
        if not self.enabled:
            return
        with self.db.read() as conn:
            rows = conn.execute(
                text(
                    "SELECT pid, datname IS NULL FROM pg_stat_activity "
                    "WHERE (datname = current_database() OR datname IS NULL) "
                    "AND pid <> pg_backend_pid()"
                )
            ).all()
        for pid, shared in rows:
            first, last = (
                (self.shared_first, self.shared_last) if shared else (self.first, self.last)
            )
            cpu = cpu_seconds(pid)
            if cpu != cpu:  # NaN: not readable (PostgreSQL on another machine)
                continue
            first.setdefault(pid, cpu if not self._started or shared else 0.0)
            last[pid] = cpu
        self._started = True

    def cpu(self) -> tuple[float, float] | None:
        """CPU seconds since the first sample: (this database's backends, shared)."""
        if not self.enabled or not self.last:
            return None
        return (
            sum(self.last[p] - self.first[p] for p in self.last),
            sum(self.shared_last[p] - self.shared_first[p] for p in self.shared_last),
        )

    @staticmethod
    def report(counters: dict[str, int], round_trips: int) -> list[str]:
        rt = max(round_trips, 1)
        lines = [
            f"postgres rt    {counters.get('xact_commit', 0) / rt:.1f} transactions committed, "
            f"{counters.get('xact_rollback', 0) / rt:.1f} rolled back per round trip "
            "(pg_stat_database; includes the bench's progress queries)"
        ]
        tables = sorted({k.split(".", 1)[0] for k in counters if "." in k})
        for table in tables:
            values = {c: counters.get(f"{table}.{c}", 0) / rt for c in PgWatch.TABLE_COLUMNS}
            if not any(values.values()):
                continue
            lines.append(
                f"  {table:<20} ins {values['n_tup_ins']:.1f}, upd {values['n_tup_upd']:.1f} "
                f"(HOT {values['n_tup_hot_upd']:.1f}), del {values['n_tup_del']:.1f}, "
                f"seq scans {values['seq_scan']:.1f}, index scans {values['idx_scan']:.1f}"
            )
        return lines
