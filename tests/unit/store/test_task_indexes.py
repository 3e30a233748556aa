"""The partial indexes of tasks (store/tables.py) serve the queries they were made for,
on both databases: each query's WHERE must imply the index's predicate, or the planner
cannot use the index at all (and claims, timers, retention, chains, children and refs
would scan the table)."""

from __future__ import annotations

from sqlalchemy import Connection, text
from test_sql import _task, db  # noqa: F401 (the fixture)

from orchestrator.store import sql
from orchestrator.store import tasks as task_store
from orchestrator.store.db import Database

TASKS = 1200
NOW = 600.0
# A claim's parameters (EXPLAIN without ANALYZE runs nothing).
CLAIM: dict[str, object] = {"now": NOW, "limit": 10, "lease_owner": "w", "lease_until": NOW + 30}
# query name, its parameters, the indexes its plan must use
EXPECTED: list[tuple[str, dict[str, object], set[str]]] = [
    ("claimable", {"now": NOW}, {"ix_tasks_runnable", "ix_tasks_timers"}),
    ("claim_runnable", CLAIM, {"ix_tasks_runnable"}),
    ("claim_due", CLAIM, {"ix_tasks_timers"}),
    ("finished_task_ids", {"before": NOW, "limit": 10}, {"ix_tasks_finished"}),
    ("chain_size", {"root_id": "root-7", "limit": 10}, {"ix_tasks_root"}),
    ("children", {"parent_task_id": "parent-7", "limit": 10}, {"ix_tasks_parent_id"}),
    ("task_by_ref", {"process_id": 1, "ref": "ref-7"}, {"ix_tasks_ref"}),
]


def _fill(db: Database) -> None:  # noqa: F811
    with db.write() as conn:
        for n in range(TASKS):
            state = ("active", "waiting", "done")[n % 3]
            task = _task(
                db,
                f"x{n:023d}",
                state=state,
                created_at=float(n),
                updated_at=float(n),
                ref=f"ref-{n}" if n % 2 else None,
                parent_task_id=f"parent-{n % 50}" if n % 5 == 0 else None,
                root_id=f"root-{n % 50}" if n % 5 == 0 else None,
                wake_at=float(n) if state == "waiting" and n % 2 else None,
                finished_at=float(n) if state == "done" else None,
                outcome="success" if state == "done" else None,
            )
            task_store.insert_task(conn, task)
        conn.execute(text("ANALYZE"))


def _plan(conn: Connection, name: str, params: dict[str, object]) -> str:
    query = sql.QUERIES[name]
    if conn.dialect.name == "sqlite":
        explain = sql.Query(name, "EXPLAIN QUERY PLAN " + query.text)
        return "\n".join(str(row[-1]) for row in sql.execute(conn, explain, params).fetchall())
    # A small table: make the planner show whether it can use an index at all.
    conn.execute(text("SET LOCAL enable_seqscan = off"))
    explain = sql.Query(name, "EXPLAIN " + query.text)
    return "\n".join(str(row[0]) for row in sql.execute(conn, explain, params).fetchall())


def test_each_task_query_uses_its_partial_index(db: Database) -> None:  # noqa: F811
    try:
        _fill(db)
        with db.write() as conn:
            pid = conn.execute(text("SELECT min(id) FROM processes")).scalar()
            for name, params, indexes in EXPECTED:
                if "process_id" in params:
                    params = {**params, "process_id": pid}
                plan = _plan(conn, name, params)
                for index in indexes:
                    assert index in plan, (name, plan)
    finally:
        db.dispose()
