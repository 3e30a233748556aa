"""Task and history queries."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from orchestrator.secretdata import redact
from orchestrator.store import sql
from orchestrator.store.records import TASK_COLUMNS, Event, TaskRecord, dumps, loads
from orchestrator.store.savepoint import all_or_nothing
from orchestrator.store.tables import task_events, tasks

_SKIP_LOCKED = {"postgresql": True}


# Hot statements: plain SQL on the driver (see store/sql.py).
_COLS = sql.column_list(TASK_COLUMNS)
_INSERT = sql.Statement(
    f"INSERT INTO tasks ({_COLS}) VALUES ({', '.join(':' + c for c in TASK_COLUMNS)})"
)
_GET = sql.Statement(f"SELECT {_COLS} FROM tasks WHERE id = :task_id")
_GET_LOCKED = sql.Statement(_GET.sqlite + " FOR UPDATE")
_BY_REF = sql.Statement(
    f"SELECT {_COLS} FROM tasks WHERE process_id = :process_id AND ref = :ref "
    "ORDER BY active_ref IS NULL, created_at DESC LIMIT 1"
)
_BY_REF_LOCKED = sql.Statement(_BY_REF.sqlite + " FOR UPDATE")
_REF_TAKEN = select(tasks.c.id).where(
    tasks.c.process_id == bindparam("process_id"), tasks.c.active_ref == bindparam("ref")
)
# One statement per set of changed columns, built on first use.
_SAVES: dict[tuple[str, ...], sql.Statement] = {}


def _locks(conn: Connection, for_update: bool) -> bool:
    return for_update and conn.dialect.name == "postgresql"


def insert_task(conn: Connection, task: TaskRecord) -> None:
    values = task.columns()
    sql.execute(conn, _INSERT, values)
    task.stored = values


class RefTaken(Exception):
    """Another unfinished task of the process has this ref (nothing was written)."""


def _unique_violations(conn: Connection) -> tuple[type[Exception], ...]:
    # The hot statements run on the driver's cursor (store/sql.py): its own error class.
    driver: type[Exception] = conn.dialect.loaded_dbapi.IntegrityError
    return IntegrityError, driver


def insert_new_task(conn: Connection, task: TaskRecord) -> None:
    """``insert_task``, or RefTaken when an unfinished task of the process has its ref
    (the transaction goes on)."""
    try:
        with all_or_nothing(conn):
            insert_task(conn, task)
    except _unique_violations(conn) as exc:
        raise RefTaken(task.ref) from exc


def get_task(conn: Connection, task_id: str, *, for_update: bool = False) -> TaskRecord | None:
    stmt = _GET_LOCKED if _locks(conn, for_update) else _GET
    row = sql.first(sql.execute(conn, stmt, {"task_id": task_id}))
    return TaskRecord.from_mapping(row) if row else None


def find_by_ref(
    conn: Connection, process_id: int, ref: str, *, for_update: bool = False
) -> TaskRecord | None:
    """The unfinished task with this ref, else the most recent finished one."""
    stmt = _BY_REF_LOCKED if _locks(conn, for_update) else _BY_REF
    row = sql.first(sql.execute(conn, stmt, {"process_id": process_id, "ref": ref}))
    return TaskRecord.from_mapping(row) if row else None


def chain_size(conn: Connection, root_id: str, limit: int) -> int:
    """How many tasks the chain rooted at ``root_id`` holds (the root included), counted
    up to ``limit`` at most (a quota check needs no more)."""
    inner = select(tasks.c.id).where(tasks.c.root_id == root_id).limit(limit).subquery()
    return 1 + int(conn.execute(select(func.count()).select_from(inner)).scalar_one())


def active_ref_taken(conn: Connection, process_id: int, ref: str) -> bool:
    return conn.execute(_REF_TAKEN, {"process_id": process_id, "ref": ref}).first() is not None


def save_task(conn: Connection, task: TaskRecord, expected_rev: int) -> bool:
    """Write the task if nobody changed it since ``expected_rev``; bumps ``rev``. Only
    changed columns are written: every index of a written column is rewritten too."""
    task.rev = expected_rev + 1
    changed = task.changed_columns()
    changed.pop("id", None)
    changed["rev"] = task.rev
    names = tuple(sorted(changed))
    stmt = _SAVES.get(names)
    if stmt is None:
        stmt = _SAVES[names] = sql.Statement(
            sql.update_sql("tasks", names, "id = :w_id AND rev = :w_rev")
        )
    if sql.execute(conn, stmt, {**changed, "w_id": task.id, "w_rev": expected_rev}).rowcount == 1:
        task.stored = {**(task.stored or {}), **changed}
        return True
    task.rev = expected_rev
    return False


def save_task_unique(conn: Connection, task: TaskRecord, expected_rev: int) -> bool:
    """``save_task``, or RefTaken when the task would become unfinished while another
    unfinished task of the process has its ref (the transaction goes on)."""
    try:
        with all_or_nothing(conn):
            return save_task(conn, task, expected_rev)
    except _unique_violations(conn) as exc:
        task.rev = expected_rev
        raise RefTaken(task.ref) from exc


_RUNNABLE = (
    "SELECT id FROM tasks WHERE state = 'active' "
    "AND (lease_until IS NULL OR lease_until < :now) ORDER BY updated_at LIMIT :limit"
)
_DUE = (
    "SELECT id FROM tasks WHERE state = 'waiting' AND wake_at <= :now ORDER BY wake_at LIMIT :limit"
)
# Whether a claim would find anything, read without locks: an engine that finds neither
# kind of work opens no write transaction (most polls find nothing; new work also wakes it).
_CLAIMABLE = sql.Statement(
    f"SELECT ({_DUE.replace(':limit', '1')}), ({_RUNNABLE.replace(':limit', '1')})"
)
_CLAIMS = {
    # Several workers share PostgreSQL: each skips rows another one is claiming.
    (query, dialect): sql.Statement(query + (" FOR UPDATE SKIP LOCKED" if dialect else ""))
    for query in (_RUNNABLE, _DUE)
    for dialect in (False, True)
}


def claim_runnable(
    conn: Connection, owner: str, limit: int, now: float, lease: float
) -> list[TaskRecord]:
    """Lease runnable tasks to ``owner``; expired leases of dead workers are taken over."""
    return _claim(conn, _RUNNABLE, owner, limit, now, now + lease, {})


def claimable(conn: Connection, now: float) -> tuple[bool, bool]:
    """(a time limit is due, a task is runnable) at ``now``, as a claim would see them."""
    row = sql.execute(conn, _CLAIMABLE, {"now": now}).fetchone()
    return row[0] is not None, row[1] is not None


def claim_due_timers(
    conn: Connection, owner: str, limit: int, now: float, lease: float
) -> list[TaskRecord]:
    """Lease waiting tasks whose time limit has passed, marked to take the timeout exit."""
    extra = {"state": "active", "entry": "timeout", "wake_at": None}
    return _claim(conn, _DUE, owner, limit, now, now + lease, extra)


def _claim(
    conn: Connection,
    query: str,
    owner: str,
    limit: int,
    now: float,
    until: float,
    extra: dict[str, Any],
) -> list[TaskRecord]:
    select_ids = _CLAIMS[(query, conn.dialect.name in _SKIP_LOCKED)]
    ids = [r[0] for r in sql.execute(conn, select_ids, {"now": now, "limit": limit}).fetchall()]
    if not ids:
        return []
    params: dict[str, Any] = {f"i{n}": task_id for n, task_id in enumerate(ids)}
    params.update(extra, lease_owner=owner, lease_until=until)
    sets = ", ".join(f"{c} = :{c}" for c in ("lease_owner", "lease_until", *extra))
    marks = ", ".join(f":i{n}" for n in range(len(ids)))
    stmt = sql.Statement(
        f"UPDATE tasks SET {sets}, rev = rev + 1 WHERE id IN ({marks}) RETURNING {_COLS}"
    )
    return [TaskRecord.from_mapping(m) for m in sql.mappings(sql.execute(conn, stmt, params))]


def release_leases(conn: Connection, owner: str, task_ids: list[str] | None = None) -> int:
    """Give back the leases ``owner`` holds: all of them (graceful shutdown), or those on
    ``task_ids``. Active tasks only: claims see them at once."""
    where = [tasks.c.lease_owner == owner, tasks.c.state == "active"]
    if task_ids is not None:
        where.append(tasks.c.id.in_(task_ids))
    result = conn.execute(update(tasks).where(*where).values(lease_owner=None, lease_until=None))
    return int(result.rowcount or 0)


def renew_leases(conn: Connection, owner: str, task_ids: list[str], until: float) -> int:
    """Extend the leases ``owner`` still holds on tasks it is running (a heartbeat)."""
    if not task_ids:
        return 0
    result = conn.execute(
        update(tasks)
        .where(tasks.c.id.in_(task_ids), tasks.c.lease_owner == owner, tasks.c.state == "active")
        .values(lease_until=until)
    )
    return int(result.rowcount or 0)


def defer(conn: Connection, task_id: str, owner: str, until: float) -> None:
    """Keep a failed step's lease until ``until``: it is retried then, not in a hot loop."""
    conn.execute(
        update(tasks)
        .where(tasks.c.id == task_id, tasks.c.lease_owner == owner)
        .values(lease_until=until)
    )


_INSERT_EVENTS = sql.Statement(
    "INSERT INTO task_events (task_id, at, kind, node_id, to_node_id, detail) "
    "VALUES (:task_id, :at, :kind, :node_id, :to_node_id, :detail)"
)


def add_events(conn: Connection, task_id: str, events: Iterable[Event], now: float) -> None:
    add_histories(conn, [(task_id, list(events))], now)


_EVENT_FIELDS = ("task_id", "at", "kind", "node_id", "to_node_id", "detail")
# Multi-row inserts by row count (a step writes a handful of events at most).
_INSERTS_OF: dict[int, sql.Statement] = {1: _INSERT_EVENTS}
_MULTI_ROW_MAX = 16


def add_histories(
    conn: Connection, histories: Iterable[tuple[str, Iterable[Event]]], now: float
) -> None:
    """The events of several tasks (a step's own, its copies' ``created``), in one
    statement, in order."""
    rows = [
        {
            "task_id": task_id,
            "at": e.at or now,
            "kind": e.kind,
            "node_id": e.node_id,
            "to_node_id": e.to_node_id,
            # History is stored bytes too: a secret-named value never reaches it.
            "detail": dumps(redact(e.detail)) if e.detail else None,
        }
        for task_id, events in histories
        for e in events
    ]
    if not rows:
        return
    if len(rows) > _MULTI_ROW_MAX:
        sql.execute_many(conn, _INSERT_EVENTS, rows)
        return
    stmt = _INSERTS_OF.get(len(rows))
    if stmt is None:
        values = ", ".join(
            "(" + ", ".join(f":{f}{n}" for f in _EVENT_FIELDS) + ")" for n in range(len(rows))
        )
        stmt = _INSERTS_OF[len(rows)] = sql.Statement(
            f"INSERT INTO task_events ({', '.join(_EVENT_FIELDS)}) VALUES {values}"
        )
    if len(rows) == 1:
        sql.execute(conn, stmt, rows[0])
        return
    sql.execute(conn, stmt, {f"{f}{n}": row[f] for n, row in enumerate(rows) for f in row})


def history(
    conn: Connection, task_id: str, *, after_id: int = 0, limit: int = 1000
) -> list[dict[str, Any]]:
    stmt = (
        select(task_events)
        .where(task_events.c.task_id == task_id, task_events.c.id > after_id)
        .order_by(task_events.c.id)
        .limit(limit)
    )
    return [
        {
            "id": r.id,
            "at": r.at,
            "kind": r.kind,
            "node_id": r.node_id,
            "to_node_id": r.to_node_id,
            "detail": loads(r.detail),
        }
        for r in conn.execute(stmt)
    ]


def list_tasks(
    conn: Connection,
    process_id: int,
    *,
    ref: str | None = None,
    node: str | None = None,
    state: str | None = None,
    outcome: str | None = None,
    limit: int = 50,
    before: tuple[float, str] | None = None,
    since: float | None = None,
    until: float | None = None,
    data_has: list[tuple[str, ...]] | None = None,
    ids: list[str] | None = None,
) -> list[TaskRecord]:
    """Newest first; ``before`` is the (created_at, id) of the last row of the prior page.
    ``since``/``until`` bound created_at; ``data_has``: for each tuple, the data's JSON
    text contains one of its strings (a scan newest first, stopping at ``limit``)."""
    conds = [tasks.c.process_id == process_id]
    if since is not None:
        conds.append(tasks.c.created_at >= since)
    if until is not None:
        conds.append(tasks.c.created_at <= until)
    if ids is not None:
        conds.append(tasks.c.id.in_(ids))
    for texts in data_has or []:
        conds.append(or_(*(tasks.c.data.contains(t, autoescape=True) for t in texts)))
    if ref is not None:
        conds.append(tasks.c.ref == ref)
    if node is not None:
        conds.append(tasks.c.node_id == node)
    if state is not None:
        conds.append(tasks.c.state == state)
    if outcome is not None:
        conds.append(tasks.c.outcome == outcome)
    if before is not None:
        at, tid = before
        # The leading "<=" is a plain range an index can seek to; the OR alone is not.
        conds.append(tasks.c.created_at <= at)
        conds.append(or_(tasks.c.created_at < at, and_(tasks.c.created_at == at, tasks.c.id < tid)))
    # SQLite has no statistics: left alone it prefers an index that yields the order
    # (process_id, created_at) and reads a whole process to find a ref's few rows. An
    # order no index gives ("created_at + 0") makes it look them up by ref or id instead.
    newest = tasks.c.created_at + 0 if ref is not None or ids is not None else tasks.c.created_at
    stmt = select(tasks).where(*conds).order_by(newest.desc(), tasks.c.id.desc()).limit(limit)
    return [TaskRecord.from_row(r) for r in conn.execute(stmt)]


def node_counts(conn: Connection, process_id: int) -> dict[str, int]:
    stmt = (
        select(tasks.c.node_id, func.count())
        .where(tasks.c.process_id == process_id)
        .group_by(tasks.c.node_id)
    )
    return {node: int(n) for node, n in conn.execute(stmt)}


def state_counts(conn: Connection, process_id: int) -> dict[str, int]:
    stmt = (
        select(tasks.c.state, tasks.c.outcome, func.count())
        .where(tasks.c.process_id == process_id)
        .group_by(tasks.c.state, tasks.c.outcome)
    )
    counts = {"active": 0, "waiting": 0, "success": 0, "escalation": 0}
    for state, outcome, n in conn.execute(stmt):
        key = outcome if state == "done" and outcome else state
        counts[key] = counts.get(key, 0) + int(n)
    return counts


def children(conn: Connection, parent_task_id: str, *, limit: int = 20) -> list[TaskRecord]:
    """Tasks copied from this one (e.g. its "Getting callback" task), oldest first."""
    stmt = (
        select(tasks)
        .where(tasks.c.parent_task_id == parent_task_id)
        .order_by(tasks.c.created_at)
        .limit(limit)
    )
    return [TaskRecord.from_row(r) for r in conn.execute(stmt)]


def find_by_data_text(conn: Connection, needle: str, *, limit: int = 50) -> list[TaskRecord]:
    """Newest first, tasks whose data (JSON text) contains ``needle``. A scan with no index
    behind it: the console uses it for exact JSON strings such as a phone number."""
    stmt = (
        select(tasks)
        .where(tasks.c.data.contains(needle, autoescape=True))
        .order_by(tasks.c.created_at.desc(), tasks.c.id.desc())
        .limit(limit)
    )
    return [TaskRecord.from_row(r) for r in conn.execute(stmt)]


def last_source(conn: Connection, task_id: str, node_id: str) -> str | None:
    """The node the task last came from into ``node_id`` (a retry's default start)."""
    stmt = (
        select(task_events.c.node_id)
        .where(
            task_events.c.task_id == task_id,
            task_events.c.kind == "transition",
            task_events.c.to_node_id == node_id,
        )
        .order_by(task_events.c.id.desc())
        .limit(1)
    )
    row = conn.execute(stmt).first()
    return str(row[0]) if row and row[0] else None
