"""The store's SQL: every statement named once in a ``.sql`` file, and the one way to run it.

As procrastinate keeps ``sql/queries.sql``: ``queries.sql`` beside this module holds the
core's statements, each under a ``-- name --`` line (``-- `` lines after it describe it);
a plugin keeps its own file (``orchestrator/twilio/queries.sql``) and loads it with
``load``. Files are read once, through ``importlib.resources`` (so from a wheel too).

Written with ``:name`` parameters (SQLite's style); the PostgreSQL text (psycopg's
positional ``%s``) is made once, when the file is loaded. At load time, also:

- ``{tasks.columns}`` becomes the table's column list from ``store/tables.py`` (the one
  list besides migrations), ``{tasks.columns t}`` the same prefixed ``t.``, and
  ``{tasks.values}`` its ``:column`` parameters;
- ``{FOR UPDATE ...}`` is a PostgreSQL row lock, used when the caller asks for one.

A statement whose shape depends on its arguments (the columns a save changed, an ``IN``
list, rows of a multi-row insert, the console's optional filters) keeps ``{slot}``s for
its caller to fill with ``Query.fill``, only with parameter marks and fragments from the
same file (never with values); hot callers cache what they fill by shape.

Statements run on the DB-API cursor of the caller's SQLAlchemy connection, inside its
transaction: through SQLAlchemy Core each cost some 40 µs of Python before the database
saw it, more than SQLite then takes to run it. Driver errors are raised as SQLAlchemy's
(``IntegrityError``, ``OperationalError``), as Core would.

PostgreSQL: psycopg's own work per statement was some 40 µs of the server's CPU (about
47 statements per SMS round trip). So each statement is sent with positional parameters
(``%s``, the values put in order here: psycopg's reordering of a dict is Python), on one
cursor kept per connection (a new cursor copies the connection's adapters), and a
statement's column names are read once (psycopg builds a ``Column`` per column for every
``description``). The cursor ``execute`` returns is therefore only valid until the next
statement on that connection: read it (``fetchone``, ``fetchall``, ``rowcount``) first.

In an optimistic PostgreSQL batch some writes are deferred to its COMMIT
(``Optimistic.defer``); every statement here first writes those of the tables it names
(``Query.tables``), so nothing run through this module can miss or reorder them.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Mapping, Sequence
from importlib.resources import files
from operator import itemgetter
from typing import Any

import psycopg
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, StatementError

from orchestrator.store import sqlcount
from orchestrator.store.savepoint import deferred_in
from orchestrator.store.tables import metadata

_HEADER = re.compile(r"^-- ([a-z0-9_]+) --\n(?:--(?: .*)?\n)*", re.MULTILINE)
_PARAM = re.compile(r"(?<![:\w]):(\w+)")
_COLUMNS = re.compile(r"\{(\w+)\.(columns|values)(?: (\w+))?\}")
_LOCK = re.compile(r"\s*\{(FOR UPDATE[A-Z ]*)\}")
_SLOT = re.compile(r"\{(\w+)\}")
_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE|JOIN)\s+(\w+)", re.IGNORECASE)


def _to_pg(text: str) -> str:
    """psycopg's text of a statement: positional ``%s`` marks (see ``Query.order``)."""
    return _PARAM.sub("%s", text.replace("%", "%%"))


def _order(names: list[str]) -> Callable[[Mapping[str, Any]], Sequence[Any]]:
    """The values of a statement's parameters, in the order its ``%s`` marks take them
    (a name used twice is there twice)."""
    if not names:
        return lambda _params: ()
    if len(names) == 1:
        name = names[0]
        return lambda params: (params[name],)
    return itemgetter(*names)


# Filled shapes kept per template: the hot ones are few (claims of 1..limit tasks, the
# column sets a save changes); the console's filter combinations are not bounded.
FILLS_KEPT = 256


class Query:
    """One statement: ``sqlite`` (also the text counted and shown), ``pg``, and
    ``pg_locked`` (``pg`` with its row lock, when it has one)."""

    __slots__ = (
        "name",
        "text",
        "sqlite",
        "pg",
        "pg_locked",
        "slots",
        "tables",
        "order",
        "names",
        "_filled",
    )

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.text = text = " ".join(text.split())
        lock = _LOCK.search(text)
        self.sqlite = _LOCK.sub("", text)
        self.pg = _to_pg(self.sqlite)
        self.pg_locked = _to_pg(_LOCK.sub(r" \1", text)) if lock else self.pg
        self.slots = frozenset(_SLOT.findall(self.sqlite))
        # The tables it names (rows deferred to them are written before it runs).
        self.tables = frozenset(_TABLE.findall(self.sqlite)) - {"unnest"}
        # The row lock adds no parameter: both texts take the same values.
        self.order = _order(_PARAM.findall(self.sqlite))
        # PostgreSQL: the names of the columns it returns, once known (every statement
        # names its columns, none is a ``SELECT *``: they cannot change under it).
        self.names: list[str] | None = None
        self._filled: dict[tuple[tuple[str, str], ...], Query] = {}

    def fill(self, **parts: str) -> Query:
        """This template with its ``{slot}``s filled (each with SQL from this store). The
        first FILLS_KEPT shapes are kept: each is converted for psycopg once."""
        key = tuple(sorted(parts.items()))
        filled = self._filled.get(key)
        if filled is not None:
            return filled
        if set(parts) != self.slots:
            raise ValueError(f"{self.name} takes {sorted(self.slots)}, not {sorted(parts)}")
        text = self.text
        for slot, part in parts.items():
            text = text.replace("{" + slot + "}", part)
        filled = Query(self.name, text)
        if len(self._filled) < FILLS_KEPT:
            self._filled[key] = filled
        return filled

    def __repr__(self) -> str:
        return f"Query({self.name!r}, {self.sqlite!r})"


def _expand_columns(match: re.Match[str]) -> str:
    table, what, alias = match.groups()
    names = list(metadata.tables[table].columns.keys())
    if what == "values":
        return ", ".join(f":{n}" for n in names)
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + n for n in names)


def parse(text: str) -> dict[str, Query]:
    """{name: query} of a query file; whatever precedes the first name is its header."""
    parts = _HEADER.split(text)
    queries: dict[str, Query] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is named twice")
        # Comment lines within a statement are for the reader: the text is sent on one line.
        lines = [line for line in body.splitlines() if not line.lstrip().startswith("--")]
        queries[name] = Query(name, _COLUMNS.sub(_expand_columns, "\n".join(lines).strip()))
    return queries


def load(package: str, filename: str = "queries.sql") -> dict[str, Query]:
    return parse(files(package).joinpath(filename).read_text(encoding="utf-8"))


QUERIES = load(__name__)


def marks(prefix: str, count: int) -> str:
    """``:prefix0, :prefix1, …`` for an ``IN`` list of ``count`` parameters."""
    return ", ".join(f":{prefix}{n}" for n in range(count))


def numbered(prefix: str, values: Sequence[Any]) -> dict[str, Any]:
    """The parameters ``marks(prefix, len(values))`` names."""
    return {f"{prefix}{n}": v for n, v in enumerate(values)}


def like_pattern(text: str) -> str:
    """A LIKE pattern, escaped with "/" (``ESCAPE '/'``), matching text containing ``text``."""
    escaped = text.replace("/", "//").replace("%", "/%").replace("_", "/_")
    return f"%{escaped}%"


def _raw(conn: Connection) -> Any:
    return conn.connection.dbapi_connection


class _Cursor(psycopg.Cursor[Any]):
    """The one cursor of a psycopg connection, and the statement it ran last."""

    __slots__ = ("query",)

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        super().__init__(connection)
        self.query: Query | None = None


_cursors: weakref.WeakKeyDictionary[Any, _Cursor] = weakref.WeakKeyDictionary()


def _cursor(raw: Any) -> _Cursor:
    """The connection's cursor (a connection is used by one thread at a time)."""
    cursor = _cursors.get(raw)
    if cursor is None or cursor.closed:
        cursor = _cursors[raw] = _Cursor(raw)
    return cursor


def _error(conn: Connection, query: Query, params: Any, exc: Exception) -> StatementError:
    dbapi = conn.dialect.loaded_dbapi
    return DBAPIError.instance(query.sqlite, params, exc, dbapi.Error, dialect=conn.dialect)


def _flush_deferred(conn: Connection, query: Query) -> None:
    """Rows deferred to the COMMIT of ``conn``'s optimistic batch (store/savepoint.py) are
    written before any statement on their table: the batch reads what it wrote, in order."""
    batch = deferred_in(conn) if query.tables else None
    if batch is not None:
        batch.flush(conn, query.tables)


def execute(
    conn: Connection, query: Query, params: Mapping[str, Any] | None = None, *, lock: bool = False
) -> Any:
    """Run ``query``; returns the DB-API cursor (rowcount, fetchone, fetchall), valid
    until the next statement on ``conn``. ``lock``: with its ``{FOR UPDATE}`` clause on
    PostgreSQL (SQLite's writers are serialized)."""
    _flush_deferred(conn, query)
    sqlcount.statement(query.sqlite, conn)
    values = params if params is not None else {}
    try:
        if conn.dialect.name == "sqlite":
            return _raw(conn).execute(query.sqlite, values)
        cursor = _cursor(_raw(conn))
        cursor.query = None  # until it ran: a failed statement leaves no names behind
        cursor.execute(query.pg_locked if lock else query.pg, query.order(values))
        cursor.query = query
        return cursor
    except conn.dialect.loaded_dbapi.Error as exc:
        raise _error(conn, query, values, exc) from exc


def execute_many(conn: Connection, query: Query, rows: Sequence[Mapping[str, Any]]) -> None:
    _flush_deferred(conn, query)
    sqlcount.statement(query.sqlite, conn)
    try:
        if conn.dialect.name == "sqlite":
            _raw(conn).executemany(query.sqlite, rows)
            return
        cursor = _cursor(_raw(conn))
        cursor.query = None
        cursor.executemany(query.pg, [query.order(row) for row in rows])
    except conn.dialect.loaded_dbapi.Error as exc:
        raise _error(conn, query, rows, exc) from exc


def _names(cursor: Any) -> list[str]:
    """The column names of the rows ``cursor`` returns."""
    query = getattr(cursor, "query", None)
    if query is None:
        return [d[0] for d in cursor.description]
    names: list[str] | None = query.names
    if names is None:
        names = query.names = [d[0] for d in cursor.description]
    return names


def mappings(cursor: Any) -> list[dict[str, Any]]:
    """Every row of a SELECT or RETURNING as a dict by column name."""
    names = _names(cursor)
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def first(cursor: Any) -> dict[str, Any] | None:
    row = cursor.fetchone()
    if row is None:
        return None
    return dict(zip(_names(cursor), row, strict=True))


def scalar(cursor: Any) -> Any:
    """The first column of the first row, or None without a row."""
    row = cursor.fetchone()
    return None if row is None else row[0]


def column(cursor: Any) -> list[Any]:
    """The first column of every row."""
    return [row[0] for row in cursor.fetchall()]
