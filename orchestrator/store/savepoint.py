"""A part of a transaction that is kept whole or not at all.

Inside an optimistic group-commit batch (PostgreSQL, store/group_commit.py) there is no
savepoint: a block that raises marks the batch poisoned instead, the batch is rolled
back, and each of its jobs runs again in plain transactions of its own, where the block
is a real savepoint. A savepoint there would cost a network round trip for every block,
though the error it guards against (a duplicate ref, say) is rare.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from sqlalchemy import Connection

from orchestrator.store import aftercommit, sqlcount

# Writes a table's deferred rows (Optimistic.defer) on the batch's connection.
Writer = Callable[[Connection, list[dict[str, Any]]], None]

# This thread's open optimistic batch: (its connection, its state).
_local = threading.local()
# SQLite savepoint names (unique within the process).
_names = itertools.count()


class Optimistic:
    """An optimistic batch's state: whether a job's block failed inside it, and the rows
    its jobs deferred to its COMMIT (``defer``)."""

    __slots__ = ("poisoned", "deferred_failed", "_deferred")

    def __init__(self) -> None:
        self.poisoned = False
        # Deferred rows failed to be written: whose is not known, and they are gone from
        # the batch (a job may even have caught the error), so it must not commit.
        self.deferred_failed = False
        # Per table: its writer and the rows waiting for it, in the order deferred.
        self._deferred: dict[str, tuple[Writer, list[dict[str, Any]]]] = {}

    def defer(
        self, conn: Connection, table: str, rows: list[dict[str, Any]], write: Writer
    ) -> None:
        """Write ``rows`` of ``table`` with ``write`` just before the batch's COMMIT, in
        one go with every other job's; never, if the batch is rolled back. Any statement
        of the batch that names ``table`` writes them first (``store.sql.execute``), so
        the batch reads what it wrote, in order. For rows whose writer's answer nobody
        needs: each was a network round trip of its own."""
        pending = self._deferred.get(table)
        if pending is not None and pending[0] is not write:
            self.flush(conn, (table,))  # one writer per table at a time: order kept
            pending = None
        if pending is None:
            self._deferred[table] = (write, list(rows))
        else:
            pending[1].extend(rows)

    def flush(self, conn: Connection, tables: Iterable[str] | None = None) -> None:
        """Write the deferred rows now (of these ``tables``, or all): before the COMMIT,
        and before a statement of the batch touches their table. DeferredWriteFailed if
        that fails: which job's rows are at fault is not known any more."""
        for name in list(self._deferred) if tables is None else tables:
            pending = self._deferred.pop(name, None)
            if pending is not None:
                try:
                    pending[0](conn, pending[1])
                except Exception as exc:
                    self.poisoned = self.deferred_failed = True
                    raise DeferredWriteFailed(name) from exc


class DeferredWriteFailed(Exception):
    """Rows that jobs of an optimistic batch deferred could not be written: the batch
    is rolled back and its jobs run again alone, where nothing is deferred."""


def write_or_defer(conn: Connection, table: str, rows: list[dict[str, Any]], write: Writer) -> None:
    """``write(conn, rows)`` now, or in an optimistic batch just before its COMMIT
    (``Optimistic.defer``)."""
    batch = optimistic(conn)
    if batch is None:
        write(conn, rows)
    else:
        batch.defer(conn, table, rows, write)


def arrays(
    rows: list[dict[str, Any]], fields: Iterable[str], floats: Iterable[str]
) -> dict[str, Any]:
    """Rows as one array per field (an ``unnest`` statement's parameters); ``floats``
    as floats (psycopg refuses an array of ints and floats mixed)."""
    columns: dict[str, Any] = {f: [row[f] for row in rows] for f in fields}
    for f in floats:
        columns[f] = [float(v) for v in columns[f]]
    return columns


def deferred_in(conn: Connection) -> Optimistic | None:
    """``conn``'s optimistic batch when rows are deferred in it (checked per statement)."""
    found: tuple[Connection, Optimistic] | None = getattr(_local, "batch", None)
    if found is not None and found[0] is conn and found[1]._deferred:
        return found[1]
    return None


def optimistic(conn: Connection) -> Optimistic | None:
    """The optimistic batch ``conn`` is open for on this thread, if any."""
    found: tuple[Connection, Optimistic] | None = getattr(_local, "batch", None)
    return found[1] if found is not None and found[0] is conn else None


@contextlib.contextmanager
def optimistic_batch(conn: Connection) -> Iterator[Optimistic]:
    """Mark ``conn``'s transaction, on this thread, as an optimistic batch."""
    state = Optimistic()
    _local.batch = (conn, state)
    try:
        yield state
    finally:
        _local.batch = None


@contextlib.contextmanager
def all_or_nothing(conn: Connection) -> Iterator[None]:
    """What the block writes is undone if it raises (the transaction goes on); a
    savepoint. In an optimistic batch: no savepoint, a raise poisons the batch (the job
    then runs again alone, where this is a savepoint)."""
    batch = optimistic(conn)
    if batch is not None:
        try:
            yield
        except BaseException:
            batch.poisoned = True
            raise
        return
    # Raw driver calls, as Database._savepoint: SQLAlchemy's nested transaction cost
    # several times more (on SQLite some 4% of a round trip's CPU), and nothing here needs
    # its bookkeeping. Released at once (SQLite: left open, it made later writes dearer).
    raw = conn.connection.dbapi_connection
    assert raw is not None
    name = f"a{next(_names)}"
    sqlcount.count("txn savepoint")
    sqlcount.statement("SAVEPOINT")
    raw.execute(f"SAVEPOINT {name}")
    queued = aftercommit.mark(conn)
    try:
        yield
    except BaseException:
        aftercommit.undo(conn, queued)
        # (SQLite ends the transaction by itself after some errors; PostgreSQL never.)
        if getattr(raw, "in_transaction", True):
            raw.execute(f"ROLLBACK TO {name}")
            raw.execute(f"RELEASE {name}")
        raise
    sqlcount.statement("RELEASE")
    raw.execute(f"RELEASE {name}")
