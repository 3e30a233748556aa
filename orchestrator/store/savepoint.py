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
from collections.abc import Iterator

from sqlalchemy import Connection

from orchestrator.store import aftercommit, sqlcount

# This thread's open optimistic batch: (its connection, its state).
_local = threading.local()
# SQLite savepoint names (unique within the process).
_names = itertools.count()


class Optimistic:
    """An optimistic batch's state: whether a job's block failed inside it."""

    __slots__ = ("poisoned",)

    def __init__(self) -> None:
        self.poisoned = False


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
