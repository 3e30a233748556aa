"""The query files (store/sql/queries.sql, twilio/queries.sql) and their loader: every
named query parses, is run by some module, and is converted for psycopg once."""

from __future__ import annotations

import re
import sqlite3
from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.schema import CreateTable

from orchestrator.store import sql
from orchestrator.store.records import TASK_COLUMNS, CallbackRecord, TaskRecord
from orchestrator.store.tables import callbacks, metadata, tasks
from orchestrator.twilio import messages_store

ROOT = Path(__file__).resolve().parents[3] / "orchestrator"


def test_parse_names_descriptions_and_comments() -> None:
    queries = sql.parse(
        "-- header, ignored\n\n-- one --\n-- what it does\nSELECT a\n  FROM t -- no\n\n"
        "-- two --\nSELECT b FROM t\n-- a comment line inside\nWHERE c = :c\n"
    )
    assert list(queries) == ["one", "two"]
    assert queries["one"].sqlite == "SELECT a FROM t -- no"
    assert queries["two"].sqlite == "SELECT b FROM t WHERE c = :c"
    with pytest.raises(ValueError, match="named twice"):
        sql.parse("-- a --\nSELECT 1\n-- a --\nSELECT 2\n")


def test_parameters_are_converted_for_psycopg_once_at_load() -> None:
    q = sql.Query(
        "q", "SELECT a FROM t WHERE b = :b AND c IN (:c, '*') AND d = 'x:y' AND e::text = '5%'"
    )
    assert (
        q.sqlite
        == "SELECT a FROM t WHERE b = :b AND c IN (:c, '*') AND d = 'x:y' AND e::text = '5%'"
    )
    assert q.pg == (
        "SELECT a FROM t WHERE b = %s AND c IN (%s, '*') AND d = 'x:y' AND e::text = '5%%'"
    )
    # Positional: the values in the order the marks take them, extra names ignored.
    assert q.order({"c": 2, "b": 1, "x": 0}) == (1, 2)


def test_positional_values_follow_the_marks_repeats_included() -> None:
    assert sql.Query("q", "SELECT 1").order({"a": 1}) == ()
    assert sql.Query("q", "SELECT :a").order({"a": 1, "b": 2}) == (1,)
    q = sql.Query("q", "SELECT x FROM t WHERE a <= :now AND (b IS NULL OR b < :now) AND c = :c")
    assert q.pg == "SELECT x FROM t WHERE a <= %s AND (b IS NULL OR b < %s) AND c = %s"
    assert q.order({"c": "z", "now": 5}) == (5, 5, "z")
    with pytest.raises(KeyError):
        q.order({"now": 5})


def test_row_lock_is_postgresql_only_and_asked_for() -> None:
    q = sql.Query("q", "SELECT id FROM t WHERE a = :a LIMIT 1 {FOR UPDATE SKIP LOCKED}")
    assert q.sqlite == "SELECT id FROM t WHERE a = :a LIMIT 1"
    assert q.pg == "SELECT id FROM t WHERE a = %s LIMIT 1"
    assert q.pg_locked == "SELECT id FROM t WHERE a = %s LIMIT 1 FOR UPDATE SKIP LOCKED"


def test_templates_fill_their_slots_only() -> None:
    q = sql.Query("q", "UPDATE t SET x = 1 WHERE id IN ({ids}) {FOR UPDATE}")
    assert q.slots == {"ids"}
    filled = q.fill(ids=sql.marks("i", 3))
    assert filled.sqlite == "UPDATE t SET x = 1 WHERE id IN (:i0, :i1, :i2)"
    assert filled.pg_locked.endswith("IN (%s, %s, %s) FOR UPDATE")
    assert filled.order(sql.numbered("i", ["a", "b", "c"])) == ("a", "b", "c")
    assert sql.numbered("i", ["a", "b"]) == {"i0": "a", "i1": "b"}
    assert q.fill(ids=sql.marks("i", 3)) is filled  # converted once per shape
    with pytest.raises(ValueError):
        q.fill(other="x")


def test_column_lists_come_from_the_tables() -> None:
    queries = sql.parse(
        "-- a --\nSELECT {callbacks.columns} FROM callbacks\n"
        "-- b --\nINSERT INTO tasks ({tasks.columns}) VALUES ({tasks.values})\n"
        "-- c --\nSELECT {processes.columns p} FROM processes p\n"
    )
    assert queries["a"].sqlite == f"SELECT {', '.join(callbacks.columns.keys())} FROM callbacks"
    assert queries["b"].sqlite.endswith(
        f"VALUES ({', '.join(':' + c for c in tasks.columns.keys())})"
    )
    assert queries["c"].sqlite.startswith("SELECT p.id, p.slug, p.title,")


def test_records_match_their_tables() -> None:
    row = TaskRecord("t", 1, 1, "n", "active", {}, 0.0, 0.0).columns()
    assert tuple(row) == TASK_COLUMNS == tuple(tasks.columns.keys())
    fields = set(CallbackRecord.__dataclass_fields__)
    assert fields <= set(callbacks.columns.keys())


def test_like_pattern_escapes_wildcards() -> None:
    assert sql.like_pattern("a_b%c/d") == "%a/_b/%c//d%"


@pytest.mark.parametrize(
    ("queries", "package"),
    [(sql.QUERIES, ROOT / "store"), (messages_store.Q, ROOT / "twilio")],
    ids=["core", "twilio"],
)
def test_every_query_is_run_and_every_table_exists(
    queries: dict[str, sql.Query], package: Path
) -> None:
    source = "\n".join(p.read_text() for p in package.rglob("*.py"))
    # A name is used where it is quoted: Q["name"], or passed on ("name", a tuple of names).
    quoted = set(re.findall(r"""["'](\w+)["']""", source))
    used = set(re.findall(r"""Q\[["'](\w+)["']\]""", source))
    # Names built from a prefix (the console filters' fragments): Q[f"list_tasks_{name}"].
    prefixes = set(re.findall(r"""Q\[f["'](\w+)\{""", source))
    unused = [n for n in queries if n not in quoted and not any(n.startswith(p) for p in prefixes)]
    assert unused == []
    assert used <= set(queries)
    for query in queries.values():
        for table in re.findall(r"\b(?:FROM|INTO|(?<!DO )UPDATE|JOIN)\s+(\w+)", query.sqlite):
            assert table in metadata.tables or table in ("chain", "unnest"), (query.name, table)


def test_every_query_is_valid_sql_on_sqlite(tmp_path: Path) -> None:
    """Each statement (templates filled) compiles against the real schema."""
    conn = sqlite3.connect(tmp_path / "schema.db")
    for table in metadata.sorted_tables:
        conn.execute(str(CreateTable(table).compile(dialect=sqlite_dialect.dialect())))
    fills = {"sets": "rev = :rev", "ids": ":i0", "rows": "(:a, :b, :c, :d, :e, :f)"}
    fills |= {"filters": "", "newest": "created_at", "any": "1 = 1", "pattern": ":p"}
    fills |= {"kinds": ":k0", "sids": ":s0"}
    for query in [*sql.QUERIES.values(), *messages_store.Q.values()]:
        if query.name.startswith(("list_tasks_", "list_opt_outs_", "data_contains")):
            continue  # fragments of list_tasks / list_opt_outs
        if query.name in (
            "lock_deploys",
            "lock_ref",
            "notify",
            "insert_events_unnest",
            "track_messages_unnest",
        ):
            continue  # PostgreSQL functions
        text = (
            query.fill(**{s: fills[s] for s in query.slots}).sqlite if query.slots else query.sqlite
        )
        conn.execute(f"EXPLAIN {text}", defaultdict(lambda: None))
