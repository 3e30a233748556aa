"""Work that must happen once per committed transaction (a metric counted, say), though
the transaction may be rolled back and run again: ``Database.retry`` after a deadlock,
an optimistic group-commit batch that one job poisoned (store/group_commit.py), a commit
tried again without its followed steps (engine/attempts.py).

``after_commit(conn, fn)`` queues ``fn`` on the write transaction ``conn`` is open for on
this thread (``Database.write`` or ``Database.batch``). The Database calls the queue once
that transaction has committed, and drops it when it is rolled back; a savepoint rolled
back (a ``write()`` inside a SQLite batch, ``all_or_nothing``) drops what was queued
inside it. The store knows nothing of what the callables do.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import Connection

log = logging.getLogger("orchestrator.store")
Call = Callable[[], object]


class Pending:
    """One open write transaction's queue; ``outer``: the one open before it on this
    thread (PostgreSQL: a ``write()`` inside another is a transaction of its own)."""

    __slots__ = ("calls", "conn", "outer")

    def __init__(self, conn: Connection, outer: Pending | None) -> None:
        self.conn = conn
        self.calls: list[Call] = []
        self.outer = outer


class _Local(threading.local):
    open: Pending | None = None  # this thread's innermost open write transaction


_local = _Local()


def after_commit(conn: Connection, fn: Call) -> None:
    """Call ``fn`` once ``conn``'s transaction has committed; never if it is rolled back.
    On a connection with no write transaction of the Database's open (a read, a
    connection of the caller's own): at once, there being nothing to wait for."""
    pending = _find(conn)
    if pending is not None:
        pending.calls.append(fn)
    else:
        fn()


def begin(conn: Connection) -> Pending:
    """``conn``'s transaction starts: its queue. ``end`` it whatever happens."""
    pending = _local.open = Pending(conn, _local.open)
    return pending


def end(pending: Pending) -> None:
    _local.open = pending.outer


def run(pending: Pending) -> None:
    """After the COMMIT: what was queued, in order. A callable that raises is logged: the
    transaction is committed all the same, and its caller must not hear otherwise."""
    for fn in pending.calls:
        try:
            fn()
        except Exception:
            log.exception("a callable run after a commit failed")


def mark(conn: Connection) -> int:
    """Where ``conn``'s queue stands as a savepoint starts (``undo`` on its rollback)."""
    pending = _find(conn)
    return len(pending.calls) if pending is not None else 0


def undo(conn: Connection, at: int) -> None:
    """A savepoint started at ``at`` (``mark``) was rolled back: so is what it queued."""
    pending = _find(conn)
    if pending is not None:
        del pending.calls[at:]


def _find(conn: Connection) -> Pending | None:
    pending = _local.open
    while pending is not None and pending.conn is not conn:
        pending = pending.outer
    return pending
