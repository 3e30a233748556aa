"""Connections: one SQLAlchemy engine (PostgreSQL: and a small one for group-commit
batches), write and read transactions, migrations.

SQLite gets WAL mode and ``BEGIN IMMEDIATE`` for writes (so two writers never deadlock
upgrading a read lock), plus an in-process lock so this process's threads queue for the
single writer instead of spinning in SQLite's busy handler. Its WAL file is kept under a
bound (``wal_limit``, see store/checkpoint.py).

Inside ``Database.batch()`` (group commit, see store/group_commit.py; SQLite and
PostgreSQL) every ``write()`` and ``read()`` on that thread joins the batch's transaction,
and is durable once the batch commits. On SQLite a write is a savepoint, so it still
succeeds or fails as a whole. PostgreSQL's batches are optimistic: a write takes no
savepoint (each was a network round trip); one that fails poisons the batch, which is
rolled back and its jobs run again, each in transactions of its own. What a transaction
queues with ``aftercommit.after_commit`` runs once it commits (a batch: once it does).
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, TypeVar

from psycopg.pq import TransactionStatus
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError

from orchestrator import resources
from orchestrator.store import aftercommit, notify, sqlcount
from orchestrator.store.checkpoint import Checkpointer
from orchestrator.store.savepoint import optimistic_batch

log = logging.getLogger("orchestrator.store")
T = TypeVar("T")


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` and use psycopg 3 for them."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


DEFAULT_WAL_LIMIT = 32 * 1024 * 1024
# PostgreSQL: connections kept for group-commit batches (a few run at once; see
# Database._batch_engine), besides the pool_size of the main pool.
BATCH_POOL_SIZE = 4
_NO_LOCK = nullcontext()  # PostgreSQL's writers need no lock of this process


def _sqlite_setup(engine: Engine, wal_limit: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # Whenever the WAL starts over, its file is cut back to this size (see Checkpointer).
        cur.execute(f"PRAGMA journal_size_limit={int(wal_limit)}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = "DEFERRED" if conn.get_execution_options().get("readonly") else "IMMEDIATE"
        conn.exec_driver_sql(f"BEGIN {mode}")


# A pooled connection unused this long is pinged before use (a database restart or an
# idle timeout in between would otherwise fail the first statement that uses it). One in
# steady use is not: if it broke, the transaction fails and is retried like any other.
IDLE_PING_SECONDS = 1.0


def _ping_when_idle(engine: Engine) -> None:
    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < IDLE_PING_SECONDS:
            return
        sqlcount.count("txn ping")
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:  # the pool then replaces the connection
            raise DisconnectionError(f"idle connection is gone: {exc}") from exc


class Database:
    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        echo: bool = False,
        wal_limit: int = DEFAULT_WAL_LIMIT,
    ) -> None:
        self.url = normalize_url(url)
        parsed = make_url(self.url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        self.is_postgres = parsed.get_backend_name() == "postgresql"
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 10}
            kwargs["pool_size"] = pool_size
            kwargs["max_overflow"] = pool_size
            # Most recently used first: the same few connections keep warm page caches.
            kwargs["pool_use_lifo"] = True
        else:
            kwargs["pool_size"] = pool_size
            kwargs["max_overflow"] = pool_size
            # No pool_pre_ping: on psycopg it is a SELECT 1 in autocommit, a network
            # round trip and a committed transaction on every checkout, which doubled the
            # transactions of a round trip. _ping_when_idle pings only idle connections.
        self.engine = create_engine(self.url, **kwargs)
        self.wal_limit = max(int(wal_limit), 1024 * 1024)
        path = make_url(self.url).database if self.is_sqlite else None
        self._wal_path = f"{path}-wal" if path and path != ":memory:" else None
        if self.is_sqlite:
            _sqlite_setup(self.engine, self.wal_limit)
        else:
            _ping_when_idle(self.engine)
        sqlcount.install(self.engine)
        self._write_lock = threading.Lock() if self.is_sqlite else None
        self._local = threading.local()  # .batch: the open group-commit connection
        self._savepoints = itertools.count()
        self._batch_engines: dict[int, Engine] = {}
        self._engines_lock = threading.Lock()
        self._checkpointer: Checkpointer | None = None

    @contextmanager
    def batch(self, lock_timeout_ms: int = 0, *, optimistic: bool = False) -> Iterator[Connection]:
        """One write transaction that this thread's ``write()``/``read()`` calls join
        until it ends; committed on success, rolled back on error.

        PostgreSQL: a row lock waited for longer than ``lock_timeout_ms`` (0: no limit)
        fails the statement; such batches run on connections opened with that
        ``lock_timeout`` (``_batch_engine``), so setting it costs no round trip. An
        ``optimistic`` batch takes no savepoints: a ``write()`` or ``all_or_nothing``
        block that raises poisons it instead (``batch_poisoned``), and its caller must
        then roll it back and run its jobs again on their own (store/group_commit.py)."""
        if self._write_lock is None:
            engine = self._batch_engine(lock_timeout_ms) if lock_timeout_ms > 0 else self.engine
            with engine.begin() as conn:
                self._local.batch = conn
                # A batch rolled back drops its jobs' queue: they run again and queue anew.
                pending = aftercommit.begin(conn)
                try:
                    # The jobs' notifications: one, just before the COMMIT (store/notify.py).
                    with notify.deferred(conn):
                        if optimistic:
                            with optimistic_batch(conn) as state:
                                self._local.optimistic = state
                                yield conn
                                state.flush(conn)  # rows its jobs deferred, then COMMIT
                        else:
                            yield conn
                finally:
                    self._local.batch = self._local.release = self._local.optimistic = None
                    aftercommit.end(pending)
            aftercommit.run(pending)
            return
        self._start_checkpointer()
        with self._write_lock, self.engine.begin() as conn:
            # The checkpointer thread copies the WAL back into the database file: not
            # inside a commit here, which would hold the event loop meanwhile.
            conn.connection.dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")  # type: ignore[union-attr]
            self._local.batch = conn
            pending = aftercommit.begin(conn)
            try:
                yield conn
            finally:
                self._local.batch = None
                aftercommit.end(pending)
        aftercommit.run(pending)

    def _batch_engine(self, lock_timeout_ms: int) -> Engine:
        """PostgreSQL: a small pool of connections whose sessions have this
        ``lock_timeout``, for batches. (``SET LOCAL`` in each batch was a round trip of
        its own; psycopg sends its BEGIN alone too, so it cannot ride along.)"""
        engine = self._batch_engines.get(lock_timeout_ms)
        if engine is not None:
            return engine
        with self._engines_lock:
            engine = self._batch_engines.get(lock_timeout_ms)
            if engine is None:
                options = f"-c lock_timeout={int(lock_timeout_ms)}"
                engine = create_engine(
                    self.url,
                    pool_size=BATCH_POOL_SIZE,
                    max_overflow=BATCH_POOL_SIZE,
                    connect_args={"options": options},
                )
                _ping_when_idle(engine)
                sqlcount.install(engine)
                self._batch_engines[lock_timeout_ms] = engine
        return engine

    def in_batch(self) -> bool:
        """Whether this thread's transactions join a group-commit batch now."""
        return getattr(self._local, "batch", None) is not None

    def batch_poisoned(self, conn: Connection) -> bool:
        """Whether a job's block failed in this optimistic batch, or a statement left its
        transaction aborted (a job may catch the error): it must then be rolled back."""
        state = getattr(self._local, "optimistic", None)
        if state is not None and state.poisoned:
            return True
        raw = conn.connection.dbapi_connection
        info = getattr(raw, "info", None)
        status = getattr(info, "transaction_status", None)
        return status == TransactionStatus.INERROR

    def batch_deferred_failed(self) -> bool:
        """Whether rows deferred in this thread's optimistic batch failed to be written
        (``Optimistic.flush``): every job must then run again alone."""
        state = getattr(self._local, "optimistic", None)
        return state is not None and bool(state.deferred_failed)

    def batch_alive(self, conn: Connection) -> bool:
        """False when SQLite ended the batch's transaction by itself (it does after some
        errors, e.g. a full disk): later statements would then commit one by one.
        PostgreSQL never does (a failed statement leaves the transaction aborted, not
        ended), and psycopg begins it only at the first statement."""
        if self._write_lock is None:
            return True
        return _in_transaction(conn.connection.dbapi_connection)

    @contextmanager
    def _savepoint(self, conn: Connection) -> Iterator[Connection]:
        # Raw driver calls: these run a few times per step, SQLAlchemy's nested
        # transactions cost several times more, and nothing here needs their bookkeeping.
        # PostgreSQL: each statement is a network round trip, so a savepoint that ended
        # well is released together with the next one's start (or by the COMMIT).
        raw = conn.connection.dbapi_connection
        assert raw is not None
        name = f"w{next(self._savepoints)}"
        sqlcount.count("txn savepoint")
        sqlcount.statement("SAVEPOINT")
        pending = getattr(self._local, "release", None)
        if pending is not None:
            self._local.release = None
            raw.execute(f"RELEASE {pending}; SAVEPOINT {name}")
        else:
            raw.execute(f"SAVEPOINT {name}")
        queued = aftercommit.mark(conn)
        try:
            yield conn
        except BaseException:
            # Rolling back to this savepoint also ends any inside it that ended well.
            self._local.release = None
            aftercommit.undo(conn, queued)
            if _in_transaction(raw):
                raw.execute(f"ROLLBACK TO {name}")
                raw.execute(f"RELEASE {name}")
            raise
        if self.is_sqlite:
            # Released at once: left open until the COMMIT (a statement less) it made
            # every later page write of the batch dearer (SQLite keeps each open
            # savepoint's pages; measured 0.4-0.6 ms more CPU per round trip).
            sqlcount.statement("RELEASE")
            raw.execute(f"RELEASE {name}")
        else:
            self._local.release = name  # releases any inside it too

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A read-write transaction, committed on success, rolled back on error. Inside a
        batch: a savepoint, or in an optimistic one nothing (a raise poisons it). What
        its block queued with ``aftercommit.after_commit`` runs after the COMMIT."""
        batch = getattr(self._local, "batch", None)
        if batch is not None:
            state = getattr(self._local, "optimistic", None)
            if state is None:
                with self._savepoint(batch):
                    yield batch
                return
            try:
                yield batch
            except BaseException:
                state.poisoned = True
                raise
            return
        if self._write_lock is not None:
            self._start_checkpointer()
        with self._write_lock or _NO_LOCK, self.engine.begin() as conn:
            pending = aftercommit.begin(conn)
            try:
                yield conn
            finally:
                aftercommit.end(pending)
        aftercommit.run(pending)  # after the COMMIT (and out of SQLite's write lock)

    def retry(self, fn: Callable[[], T], attempts: int = 5) -> T:
        """Run a transaction again when PostgreSQL picked it as a deadlock victim, refused
        to serialise it or timed out its lock wait; these leave nothing behind, so a retry
        is safe. Inside a batch it is not retried here: the batch holds other jobs' row
        locks, so the wait would go on; the batch starts over instead (group_commit.py)."""
        for i in range(attempts):
            try:
                return fn()
            except Exception as exc:
                if sqlstate(exc) not in RETRYABLE_SQLSTATES or i == attempts - 1:
                    raise
                if self.in_batch():
                    raise
                time.sleep(random.uniform(0.005, 0.05) * (i + 1))
        raise AssertionError("unreachable")

    def _start_checkpointer(self) -> None:
        if self._checkpointer is None and self._wal_path is not None:
            self._checkpointer = Checkpointer(self)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        batch = getattr(self._local, "batch", None)
        if batch is not None:  # see the batch's own writes, like any later transaction
            yield batch
            return
        with self.engine.connect() as base:
            conn = base.execution_options(readonly=True)
            with conn.begin():
                yield conn

    def ping(self) -> bool:
        try:
            with self.read() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    def sqlite_path(self) -> str | None:
        if not self.is_sqlite:
            return None
        return make_url(self.url).database or None

    def wal_path(self) -> str | None:
        """The SQLite WAL file (None: not SQLite, or in memory)."""
        return self._wal_path

    def dispose(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        for engine in self._batch_engines.values():
            engine.dispose()
        self.engine.dispose()


def sqlstate(exc: BaseException) -> str | None:
    """PostgreSQL's SQLSTATE of a database error, raised through SQLAlchemy or straight
    from psycopg (store/sql.py runs on the driver's cursor); None for anything else."""
    code = getattr(exc, "sqlstate", None) or getattr(getattr(exc, "orig", None), "sqlstate", None)
    return code if isinstance(code, str) else None


# Errors after which a transaction can simply run again: a deadlock victim, a
# serialisation failure, a lock waited for too long (lock_timeout).
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001", "55P03"})


def _in_transaction(raw: Any) -> bool:
    """Whether a driver connection (sqlite3 or psycopg) is inside a transaction."""
    info = getattr(raw, "info", None)
    if info is not None and hasattr(info, "transaction_status"):
        return bool(info.transaction_status != TransactionStatus.IDLE)
    return bool(raw.in_transaction)


def alembic_config(url: str) -> Any:
    return resources.alembic_config(normalize_url(url))


def upgrade(url: str) -> None:
    """Apply every migration (``alembic upgrade head``)."""
    from alembic import command

    command.upgrade(alembic_config(url), "head")
