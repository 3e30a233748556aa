"""Task and history queries (SQL: store/sql/queries.sql)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from orchestrator.secretdata import redact
from orchestrator.store import sql
from orchestrator.store.records import TASK_COLUMNS, Event, TaskRecord, dumps, loads
from orchestrator.store.savepoint import all_or_nothing, arrays, write_or_defer

Q = sql.QUERIES
# Statements whose shape depends on their arguments, filled once per shape.
_SAVES: dict[tuple[str, ...], sql.Query] = {}
_EVENT_INSERTS: dict[int, sql.Query] = {}
# Up to this many events go in one multi-row insert (a step writes a handful at most).
_MULTI_ROW_MAX = 16
_EVENT_FIELDS = ("task_id", "at", "kind", "node_id", "to_node_id", "detail")


def _locks(conn: Connection, for_update: bool) -> bool:
    return for_update and conn.dialect.name == "postgresql"


def insert_task(
    conn: Connection, task: TaskRecord, data_text: str | None = None, *, looked: bool = False
) -> None:
    """``data_text``: see TaskRecord.columns. ``looked``: the caller has looked for
    callbacks held for the task's ref and set ``held_callbacks`` (engine/early.py)."""
    if task.ref is not None and not looked:
        # A callback for its ref may have come before the task (it waits as an orphan):
        # the first wait node looks for it (engine/deliveries.py).
        task.held_callbacks = 1
    values = task.columns(data_text)
    sql.execute(conn, Q["insert_task"], values)
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
    cursor = sql.execute(conn, Q["get_task"], {"task_id": task_id}, lock=for_update)
    row = sql.first(cursor)
    return TaskRecord.from_mapping(row) if row else None


def find_by_ref(
    conn: Connection, process_id: int, ref: str, *, for_update: bool = False
) -> TaskRecord | None:
    """The unfinished task with this ref, else the most recent finished one."""
    params = {"process_id": process_id, "ref": ref}
    row = sql.first(sql.execute(conn, Q["task_by_ref"], params, lock=for_update))
    return TaskRecord.from_mapping(row) if row else None


def chain_size(conn: Connection, root_id: str, limit: int) -> int:
    """How many tasks the chain rooted at ``root_id`` holds (the root included), counted
    up to ``limit`` at most (a quota check needs no more)."""
    cursor = sql.execute(conn, Q["chain_size"], {"root_id": root_id, "limit": limit})
    return 1 + int(sql.scalar(cursor))


def active_ref_taken(conn: Connection, process_id: int, ref: str) -> bool:
    params = {"process_id": process_id, "ref": ref}
    return sql.execute(conn, Q["active_ref_taken"], params).fetchone() is not None


def save_task(
    conn: Connection, task: TaskRecord, expected_rev: int, data_text: str | None = None
) -> bool:
    """Write the task if nobody changed it since ``expected_rev``; bumps ``rev``. Only
    changed columns are written: every index of a written column is rewritten too.
    ``data_text``: see TaskRecord.columns."""
    task.rev = expected_rev + 1
    changed = task.changed_columns(data_text)
    changed.pop("id", None)
    changed["rev"] = task.rev
    names = tuple(sorted(changed))
    stmt = _SAVES.get(names)
    if stmt is None:
        if not set(names) <= _TASK_COLUMN_SET:
            raise ValueError(f"not task columns: {sorted(set(names) - _TASK_COLUMN_SET)}")
        sets = ", ".join(f"{c} = :{c}" for c in names)
        stmt = _SAVES[names] = Q["save_task"].fill(sets=sets)
    params = {**changed, "w_id": task.id, "w_rev": expected_rev}
    rows = sql.execute(conn, stmt, params).fetchall()
    if rows:
        task.held_callbacks = int(rows[0][0])
        task.stored = {**(task.stored or {}), **changed, "held_callbacks": task.held_callbacks}
        return True
    task.rev = expected_rev
    return False


def hold_callbacks(conn: Connection, task: TaskRecord) -> None:
    """A callback is kept pending for ``task`` (locked by the caller): its next wait node
    or finish looks in the inbox. A step running the task meanwhile is not disturbed
    (save_task reads the flag back)."""
    if not task.held_callbacks:
        sql.execute(conn, Q["hold_callbacks"], {"task_id": task.id})
        _set_held(task, 1)


def lock_ref(conn: Connection, process_id: int, ref: str) -> None:
    """PostgreSQL: wait for, then hold until this transaction ends, the lock of this ref
    of the process (engine/early.py). SQLite's writers are serialized already."""
    if conn.dialect.name == "postgresql":
        digest = hashlib.blake2b(ref.encode(), digest_size=4).digest()
        params = {"process_id": process_id, "ref_key": int.from_bytes(digest, signed=True)}
        sql.execute(conn, Q["lock_ref"], params).fetchall()


def callbacks_settled(conn: Connection, task: TaskRecord) -> None:
    """No callback is held for ``task`` any more (locked by the caller, who looked)."""
    if task.held_callbacks:
        sql.execute(conn, Q["callbacks_settled"], {"task_id": task.id})
        _set_held(task, 0)


def _set_held(task: TaskRecord, value: int) -> None:
    task.held_callbacks = value
    if task.stored is not None:
        task.stored["held_callbacks"] = value


def save_task_unique(conn: Connection, task: TaskRecord, expected_rev: int) -> bool:
    """``save_task``, or RefTaken when the task would become unfinished while another
    unfinished task of the process has its ref (the transaction goes on)."""
    try:
        with all_or_nothing(conn):
            return save_task(conn, task, expected_rev)
    except _unique_violations(conn) as exc:
        task.rev = expected_rev
        raise RefTaken(task.ref) from exc


_TASK_COLUMN_SET = frozenset(TASK_COLUMNS)


def claim_runnable(
    conn: Connection, owner: str, limit: int, now: float, lease: float
) -> list[TaskRecord]:
    """Lease runnable tasks to ``owner``; expired leases of dead workers are taken over."""
    claimed = _claim(conn, "claim_runnable", owner, limit, now, now + lease)
    claimed.sort(key=_by_age)  # RETURNING keeps no order: the longest waiting first
    return claimed


def _by_age(task: TaskRecord) -> float:
    return task.updated_at


def claimable(conn: Connection, now: float) -> tuple[bool, bool]:
    """(a time limit is due, a task is runnable) at ``now``, as a claim would see them.
    Read without locks: an engine that finds neither kind of work opens no write
    transaction (most polls find nothing; new work also wakes it)."""
    row = sql.execute(conn, Q["claimable"], {"now": now}).fetchone()
    return row[0] is not None, row[1] is not None


def claim_due_timers(
    conn: Connection, owner: str, limit: int, now: float, lease: float
) -> list[TaskRecord]:
    """Lease waiting tasks whose time limit has passed, marked to take the timeout exit."""
    return _claim(conn, "claim_due", owner, limit, now, now + lease)


def _claim(
    conn: Connection, name: str, owner: str, limit: int, now: float, until: float
) -> list[TaskRecord]:
    # One statement picks and leases (a constant text: one prepared statement, where
    # a list of the picked ids made a new shape for each count).
    params = {"now": now, "limit": limit, "lease_owner": owner, "lease_until": until}
    cursor = sql.execute(conn, Q[name], params, lock=True)
    return [TaskRecord.from_mapping(m) for m in sql.mappings(cursor)]


def release_leases(conn: Connection, owner: str, task_ids: list[str] | None = None) -> int:
    """Give back the leases ``owner`` holds: all of them (graceful shutdown), or those on
    ``task_ids``. Active tasks only: claims see them at once."""
    if task_ids is None:
        return int(sql.execute(conn, Q["release_all_leases"], {"owner": owner}).rowcount)
    if not task_ids:
        return 0
    stmt = Q["release_leases"].fill(ids=sql.marks("i", len(task_ids)))
    params = {**sql.numbered("i", task_ids), "owner": owner}
    return int(sql.execute(conn, stmt, params).rowcount)


def renew_leases(conn: Connection, owner: str, task_ids: list[str], until: float) -> int:
    """Extend the leases ``owner`` still holds on tasks it is running (a heartbeat)."""
    if not task_ids:
        return 0
    stmt = Q["renew_leases"].fill(ids=sql.marks("i", len(task_ids)))
    params = {**sql.numbered("i", task_ids), "owner": owner, "until": until}
    return int(sql.execute(conn, stmt, params).rowcount)


def defer(conn: Connection, task_id: str, owner: str, until: float) -> None:
    """Keep a failed step's lease until ``until``: it is retried then, not in a hot loop."""
    params = {"task_id": task_id, "owner": owner, "until": until}
    sql.execute(conn, Q["defer_task"], params)


def add_events(conn: Connection, task_id: str, events: Iterable[Event], now: float) -> None:
    add_histories(conn, [(task_id, list(events))], now)


def _event_insert(rows: int) -> sql.Query:
    stmt = _EVENT_INSERTS.get(rows)
    if stmt is None:
        fields = _EVENT_FIELDS
        suffixes = [""] if rows == 1 else [str(n) for n in range(rows)]
        values = ", ".join("(" + ", ".join(f":{f}{n}" for f in fields) + ")" for n in suffixes)
        stmt = _EVENT_INSERTS[rows] = Q["insert_events"].fill(rows=values)
    return stmt


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
    write_or_defer(conn, "task_events", rows, _insert_event_rows)


def _insert_event_rows(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if len(rows) > _MULTI_ROW_MAX and conn.dialect.name == "postgresql":
        # (A batch's deferred events: one statement, one shape, whatever their number.)
        sql.execute(conn, Q["insert_events_unnest"], arrays(rows, _EVENT_FIELDS, ("at",)))
    elif len(rows) == 1:
        sql.execute(conn, _event_insert(1), rows[0])
    elif len(rows) > _MULTI_ROW_MAX:
        sql.execute_many(conn, _event_insert(1), rows)
    else:
        params = {f"{f}{n}": v for n, row in enumerate(rows) for f, v in row.items()}
        sql.execute(conn, _event_insert(len(rows)), params)


def history(
    conn: Connection, task_id: str, *, after_id: int = 0, limit: int = 1000
) -> list[dict[str, Any]]:
    params = {"task_id": task_id, "after_id": after_id, "limit": limit}
    rows = sql.mappings(sql.execute(conn, Q["history"], params))
    for row in rows:
        row["detail"] = loads(row["detail"])
    return rows


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
    params: dict[str, Any] = {"process_id": process_id, "limit": limit}
    filters: list[str] = []
    for name, value in (
        ("since", since),
        ("until", until),
        ("ref", ref),
        ("node", node),
        ("state", state),
        ("outcome", outcome),
    ):
        if value is not None:
            filters.append(Q[f"list_tasks_{name}"].text)
            params[name] = value
    if ids is not None:
        filters.append(Q["list_tasks_ids"].fill(ids=sql.marks("id", len(ids)) or "NULL").text)
        params.update(sql.numbered("id", ids))
    for n, texts in enumerate(data_has or []):
        if not texts:
            continue
        contains = [Q["data_contains"].fill(pattern=f":d{n}_{m}").text for m in range(len(texts))]
        filters.append(Q["list_tasks_data_has"].fill(any=" OR ".join(contains)).text)
        params.update({f"d{n}_{m}": sql.like_pattern(t) for m, t in enumerate(texts)})
    if before is not None:
        filters.append(Q["list_tasks_before"].text)
        params.update(before_at=before[0], before_id=before[1])
    # SQLite has no statistics: left alone it prefers an index that yields the order
    # (process_id, created_at) and reads a whole process to find a ref's few rows. An
    # order no index gives ("created_at + 0") makes it look them up by ref or id instead.
    newest = "created_at + 0" if ref is not None or ids is not None else "created_at"
    stmt = Q["list_tasks"].fill(filters=" ".join(filters), newest=newest)
    return [TaskRecord.from_mapping(m) for m in sql.mappings(sql.execute(conn, stmt, params))]


def node_counts(conn: Connection, process_id: int) -> dict[str, int]:
    rows = sql.execute(conn, Q["node_counts"], {"process_id": process_id}).fetchall()
    return {node: int(n) for node, n in rows}


def state_counts(conn: Connection, process_id: int) -> dict[str, int]:
    rows = sql.execute(conn, Q["state_counts"], {"process_id": process_id}).fetchall()
    counts = {"active": 0, "waiting": 0, "success": 0, "escalation": 0}
    for state, outcome, n in rows:
        key = outcome if state == "done" and outcome else state
        counts[key] = counts.get(key, 0) + int(n)
    return counts


def children(conn: Connection, parent_task_id: str, *, limit: int = 20) -> list[TaskRecord]:
    """Tasks copied from this one (e.g. its "Getting callback" task), oldest first."""
    params = {"parent_task_id": parent_task_id, "limit": limit}
    return [
        TaskRecord.from_mapping(m) for m in sql.mappings(sql.execute(conn, Q["children"], params))
    ]


def find_by_data_text(conn: Connection, needle: str, *, limit: int = 50) -> list[TaskRecord]:
    """Newest first, tasks whose data (JSON text) contains ``needle``. A scan with no index
    behind it: the console uses it for exact JSON strings such as a phone number."""
    params = {"pattern": sql.like_pattern(needle), "limit": limit}
    cursor = sql.execute(conn, Q["tasks_with_data_text"], params)
    return [TaskRecord.from_mapping(m) for m in sql.mappings(cursor)]


def last_source(conn: Connection, task_id: str, node_id: str) -> str | None:
    """The node the task last came from into ``node_id`` (a retry's default start)."""
    params = {"task_id": task_id, "node_id": node_id}
    value = sql.scalar(sql.execute(conn, Q["last_source"], params))
    return str(value) if value else None
