"""PostgreSQL's own view of a bench run: ``pg_stat_database`` and ``pg_stat_user_tables``
read before and after, and the CPU of the bench database's backends taken from /proc
(PostgreSQL runs on this machine in the bench; elsewhere that line says n/a)."""

from __future__ import annotations

from orchestrator.bench import reads
from orchestrator.bench.processes import cpu_seconds
from orchestrator.store.db import Database

# How long an idle PostgreSQL 15 backend may keep its statistics before reporting them
# (PGSTAT_IDLE_INTERVAL, 10 s), plus a margin.
PG_STATS_DELAY = 11.0


class PgWatch:
    """PostgreSQL's counters for the bench database, and its backends' CPU."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.enabled = db.is_postgres
        self.first: dict[int, float] = {}  # backend pid -> its CPU when first seen
        self.last: dict[int, float] = {}
        self.shared_first: dict[int, float] = {}
        self.shared_last: dict[int, float] = {}
        self._started = False

    def counters(self) -> dict[str, int]:
        return reads.pg_counters(self.db) if self.enabled else {}

    def sample_cpu(self) -> None:
        """Record the CPU of this database's backends (not the bench's own connection) and
        of PostgreSQL's shared processes (WAL writer, checkpointer, ...). A backend first
        seen after the first sample started during the run: all its CPU counts."""
        if not self.enabled:
            return
        for pid, shared in reads.pg_backends(self.db):
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
            values = {c: counters.get(f"{table}.{c}", 0) / rt for c in reads.TABLE_COLUMNS}
            if not any(values.values()):
                continue
            lines.append(
                f"  {table:<20} ins {values['n_tup_ins']:.1f}, upd {values['n_tup_upd']:.1f} "
                f"(HOT {values['n_tup_hot_upd']:.1f}), del {values['n_tup_del']:.1f}, "
                f"seq scans {values['seq_scan']:.1f}, index scans {values['idx_scan']:.1f}"
            )
        return lines
