"""The engine's hottest statements, as plain SQL run on the DB-API cursor.

A round trip runs about sixty statements. Through SQLAlchemy Core each costs some 40 µs
of Python before the database sees it, more than SQLite then takes to run it; on the
driver's cursor it costs a few. Only the statements the engine runs on every step live
here; everything else stays Core. The SQL is written once with ``:name`` parameters
(SQLite's style) and rewritten for psycopg's ``%(name)s``; it runs inside the caller's
SQLAlchemy transaction, on the same connection.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection

from orchestrator.store import sqlcount

_NAMED = re.compile(r"(?<![:\w]):(\w+)")


class Statement:
    __slots__ = ("sqlite", "pg")

    def __init__(self, sql: str) -> None:
        self.sqlite = " ".join(sql.split())
        self.pg = _NAMED.sub(r"%(\1)s", self.sqlite)


def _raw(conn: Connection) -> Any:
    return conn.connection.dbapi_connection


def execute(conn: Connection, stmt: Statement, params: Mapping[str, Any]) -> Any:
    """Run ``stmt``; returns the DB-API cursor (rowcount, fetchone, fetchall)."""
    sqlcount.statement(stmt.sqlite, conn)
    if conn.dialect.name == "sqlite":
        return _raw(conn).execute(stmt.sqlite, params)
    cursor = _raw(conn).cursor()
    cursor.execute(stmt.pg, params)
    return cursor


def execute_many(conn: Connection, stmt: Statement, rows: Sequence[Mapping[str, Any]]) -> None:
    sqlcount.statement(stmt.sqlite, conn)
    if conn.dialect.name == "sqlite":
        _raw(conn).executemany(stmt.sqlite, rows)
        return
    cursor = _raw(conn).cursor()
    cursor.executemany(stmt.pg, rows)


def mappings(cursor: Any) -> list[dict[str, Any]]:
    """Every row of a SELECT or RETURNING as a dict by column name."""
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def first(cursor: Any) -> dict[str, Any] | None:
    row = cursor.fetchone()
    if row is None:
        return None
    return dict(zip([d[0] for d in cursor.description], row, strict=True))


def column_list(names: Iterable[str]) -> str:
    return ", ".join(names)


def update_sql(table: str, columns: Iterable[str], where: str) -> str:
    """``UPDATE table SET c = :c, … WHERE where``."""
    sets = ", ".join(f"{c} = :{c}" for c in columns)
    return f"UPDATE {table} SET {sets} WHERE {where}"
