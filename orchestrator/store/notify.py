"""Waking engines across processes: PostgreSQL LISTEN/NOTIFY.

Whoever makes work runnable for any engine (a new task, a stored callback) calls
``notify`` inside its transaction; PostgreSQL delivers it on commit. Each engine keeps
one ``Listener`` connection and wakes on every notification. Engines also poll, so a
lost notification (or SQLite, which has none) only costs latency, never work.

Inside a group-commit batch (``Database.batch``) many jobs notify; since PostgreSQL
delivers notifications only at COMMIT anyway, they are collected (``deferred``) and the
batch sends one, just before its COMMIT; a batch rolled back sends none. (Each was a
statement, a network round trip, of its own: ~3 per SMS round trip.)
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator

from sqlalchemy import Connection
from sqlalchemy.engine import make_url

from orchestrator.store import sql

CHANNEL = "orchestrator_work"
_NOTIFY = sql.QUERIES["notify"]

log = logging.getLogger("orchestrator.notify")


# This thread's open batch whose notifications are deferred: [its connection, whether
# one of its jobs notified].
_local = threading.local()


def notify(conn: Connection) -> None:
    """Wake every engine once this transaction commits."""
    if conn.dialect.name != "postgresql":
        return
    pending: list[object] | None = getattr(_local, "pending", None)
    if pending is not None and pending[0] is conn:
        pending[1] = True  # sent once, by ``deferred``, before the batch's COMMIT
        return
    _send(conn)


def _send(conn: Connection) -> None:
    sql.execute(conn, _NOTIFY, {"channel": CHANNEL}).fetchall()


@contextlib.contextmanager
def deferred(conn: Connection) -> Iterator[None]:
    """Collect the ``notify`` calls on ``conn`` (this thread) in the block into one, sent
    when the block ends well: the caller commits right after. A block that raises (its
    transaction is rolled back) sends none."""
    if conn.dialect.name != "postgresql":
        yield
        return
    pending: list[object] = [conn, False]
    outer = getattr(_local, "pending", None)
    _local.pending = pending
    try:
        yield
    finally:
        _local.pending = outer
    if pending[1]:
        _send(conn)


class Listener:
    """A background thread holding ``LISTEN`` on its own connection."""

    def __init__(self, database_url: str, on_notify: Callable[[], None]) -> None:
        url = make_url(database_url).set(drivername="postgresql")
        self._conninfo = url.render_as_string(hide_password=False)
        self._on_notify = on_notify
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, wait: bool = True) -> None:
        # Setting the flag is what matters: the thread sees it within a second. Callers
        # on an event loop pass wait=False rather than block it on the join.
        self._stop.set()
        if wait:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self._on_notify()
            except Exception as exc:  # the database restarted: polling covers the gap
                log.warning("LISTEN connection lost (%s); retrying in 1 s", exc)
                self._stop.wait(1.0)
