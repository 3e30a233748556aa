"""Counts of SQL statements and transactions, for ``orchestrator bench``.

Off unless ORCH_SQL_COUNTS names a directory (the bench sets it for the processes it
starts). Then every engine this process creates counts its statements (by verb and
first table, e.g. ``UPDATE tasks``) and its transactions (commits of read and of write
transactions, rollbacks, and the SAVEPOINTs a group-commit batch runs its writes in),
and a thread writes the totals to ``<dir>/<pid>.json`` every 0.2 s, so the bench can
subtract a reading taken before the run from one taken after.
"""

from __future__ import annotations

import json
import os
import re
import threading
from typing import Any

from sqlalchemy import Connection, Engine, event

ENV = "ORCH_SQL_COUNTS"
WRITE_EVERY = 0.2

_TABLE = re.compile(r'\b(?:FROM|INTO|UPDATE)\s+"?(\w+)', re.IGNORECASE)
_lock = threading.Lock()
_counts: dict[str, int] = {}
_kinds: dict[str, str] = {}  # statement text -> its kind (compiled statements repeat)
_writer: threading.Thread | None = None
# A transaction's shape: the distinct kinds of its first statements, in order (counted
# as ``shape write: SELECT tasks, UPDATE tasks``), to see which transactions a round trip
# runs. In a SQLite group-commit batch it is that of the batch's first jobs.
_SHAPE = "sqlcount_shape"
SHAPE_KINDS = 5


def kind_of(statement: str) -> str:
    """``VERB table`` of a statement (``SELECT tasks``); ``VERB`` alone without a table."""
    verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "?"
    if verb in ("SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN", "COMMIT", "PRAGMA", "SET", "SHOW"):
        return verb
    match = _TABLE.search(statement)
    return f"{verb} {match.group(1)}" if match else verb


def count(key: str) -> None:
    if _writer is None:
        return
    with _lock:
        _counts[key] = _counts.get(key, 0) + 1


def statement(sql: str, conn: Connection | None = None) -> None:
    """Count one statement (an executemany counts once), also those run on the driver's
    cursor directly (store/sql, savepoints), which SQLAlchemy's events never see.
    With ``conn``, its kind is added to the shape of the transaction it runs in."""
    if _writer is None:
        return
    kind = _kinds.get(sql)
    if kind is None:
        kind = _kinds[sql] = kind_of(sql)
    count("stmt " + kind)
    if conn is not None and " " in kind:  # not BEGIN, SAVEPOINT, ...
        kinds = conn.info.get(_SHAPE)
        if kinds is not None and kind not in kinds and len(kinds) <= SHAPE_KINDS:
            kinds.append(kind)


def _shape(kinds: list[str] | None) -> str:
    if not kinds:
        return "(no statement)"
    more = ", ..." if len(kinds) > SHAPE_KINDS else ""
    return ", ".join(kinds[:SHAPE_KINDS]) + more


def install(engine: Engine) -> None:
    """Count ``engine``'s statements and transactions when ORCH_SQL_COUNTS is set."""
    directory = os.environ.get(ENV)
    if not directory:
        return
    _start_writer(directory)

    @event.listens_for(engine, "before_cursor_execute")
    def _statement(
        _conn: Connection, _cursor: Any, sql: str, _params: Any, _ctx: Any, _many: bool
    ) -> None:
        statement(sql, _conn)

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.info[_SHAPE] = []

    @event.listens_for(engine, "commit")
    def _commit(conn: Connection) -> None:
        mode = "read" if conn.get_execution_options().get("readonly") else "write"
        count(f"txn commit {mode}")
        count(f"shape {mode}: {_shape(conn.info.pop(_SHAPE, None))}")

    @event.listens_for(engine, "rollback")
    def _rollback(conn: Connection) -> None:
        conn.info.pop(_SHAPE, None)
        count("txn rollback")


def _start_writer(directory: str) -> None:
    global _writer
    if _writer is not None:
        return
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{os.getpid()}.json")

    def run() -> None:
        stop = threading.Event()
        while True:
            with _lock:
                data = json.dumps(_counts)
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                f.write(data)
            os.replace(tmp, path)  # a reader never sees half a file
            stop.wait(WRITE_EVERY)

    _writer = threading.Thread(target=run, name="sql-counts", daemon=True)
    _writer.start()


def read_counts(directory: str) -> dict[str, dict[str, int]]:
    """{pid: counts} of every process counting into ``directory``."""
    out: dict[str, dict[str, int]] = {}
    try:
        names = os.listdir(directory)
    except OSError:
        return out
    for name in names:
        if name.endswith(".json"):
            try:
                with open(os.path.join(directory, name)) as f:
                    out[name[:-5]] = json.load(f)
            except (OSError, ValueError):
                continue
    return out
