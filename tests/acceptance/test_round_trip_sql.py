"""How many SQL statements one SMS round trip costs (issue 14), by kind, so that a change
adding a statement to the hot path shows here. The simulator spaces its callbacks far
apart, so each lands on a waiting task (the common case under load too)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from stack import ACCOUNT, TOKEN, Stack, running_stack

from orchestrator.store import sql, sqlcount
from orchestrator.store.tables import tasks
from orchestrator.twilio.simulator import SimulatorConfig

# Statements that depend on how often the idle engine polls, not on the round trip.
POLLS = {sql.QUERIES[name].sqlite for name in ("claimable", "new_callbacks")}
# Savepoints (group commit's business), session SETs, pg_notify (a bare SELECT, on
# PostgreSQL only), and reads of what the servers cache for a second (callbacks a second
# apart miss it).
NOT_COUNTED = {
    "SAVEPOINT",
    "RELEASE",
    "BEGIN",
    "COMMIT",
    "SET",
    "SELECT",
    "SELECT processes",
    "SELECT api_keys",
}

# Create (2: the task is stored at calling_api with its "created" and "transition"
# events, its start node only saying "go"), claim (1: picked and leased in one UPDATE),
# send with copy (9; the copy, with the sid as ref, is stored in its wait node at once,
# having looked for callbacks that came before it: engine/early.py); per status callback,
# one transaction: receive (2-3), and the delivery (5: the claim read the callback),
# which runs the steps that follow it (transitions.follower): the copy's, modifying the
# original (the original as looked up, the modify callback stored as applied), and the
# original's, each task's row written once with where its step leaves it, all the events
# in one INSERT. Only the copy, which has a ref (its sid), looks for callbacks that came
# early, once, when its creation places it in its wait node (SELECT callbacks, before
# the INSERT, which stores held_callbacks as found: on PostgreSQL holding its ref's lock,
# see engine/early.py); the other wait entries and finishes know from held_callbacks
# that none can be there.
# Each status callback is verified with its message's sender, known since the send
# (twilio/context.py): no SELECT twilio_messages, 2 before. In a group-commit batch on
# PostgreSQL the history goes in one INSERT per batch (store/savepoint.py): not here, a
# lone round trip's jobs run one per transaction.
# (Before the copy was placed in its wait node: 5 INSERT task_events and 8 UPDATE tasks
# on PostgreSQL, 7 on SQLite, its start step of its own. Before the start shortcut of
# issue 14: 10 INSERT task_events and 13 UPDATE tasks, the original's start step;
# before the followed steps: 9 and 12, a released task written once by its delivery and
# again by its step, each step's events in an INSERT of its own.)
EXPECTED = {
    "INSERT tasks": 2,
    "INSERT task_events": 4,
    "UPDATE tasks": 6,
    "SELECT tasks": 6,
    "SELECT callbacks": 1,
    "INSERT callbacks": 4,
    "UPDATE callbacks": 2,
    "INSERT twilio_messages": 1,
    "UPDATE twilio_messages": 1,
    "SELECT sms_opt_outs": 1,
    "INSERT effects": 1,
    "UPDATE effects": 1,
}
# PostgreSQL: the copy's creation takes its ref's lock before it looks (engine/early.py),
# a bare SELECT counted here as LOCK ref; SQLite, one writer, needs none.
ON_POSTGRES = {**EXPECTED, "LOCK ref": 1}


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[list[str]]:
    """Every statement the servers started here run, as its text (not the test's own
    reads, in this thread)."""
    seen: list[str] = []
    lock = threading.Lock()
    test_thread = threading.current_thread()

    def record(text: str, conn: object = None) -> None:
        if threading.current_thread() is not test_thread:
            with lock:
                seen.append(text)

    monkeypatch.setenv(sqlcount.ENV, str(tmp_path))
    # Counting on, without the thread writing the totals to files.
    monkeypatch.setattr(sqlcount, "_writer", threading.current_thread())
    monkeypatch.setattr(sqlcount, "statement", record)
    yield seen


@pytest.fixture
def stack(db_url: str, counted: list[str]) -> Iterator[Stack]:
    sim = SimulatorConfig(account_sid=ACCOUNT, auth_token=TOKEN, callback_delay=1.0)
    with running_stack(db_url, sim) as s:
        yield s


def _both_done(stack: Stack, task_id: str) -> bool:
    with stack.db.read() as conn:
        rows = conn.execute(
            select(tasks.c.state).where(
                (tasks.c.id == task_id) | (tasks.c.parent_task_id == task_id)
            )
        ).all()
    return len(rows) == 2 and all(r.state == "done" for r in rows)


def _kind(statement: str) -> str:
    return "LOCK ref" if "pg_advisory_xact_lock" in statement else sqlcount.kind_of(statement)


def _counted_round_trip(stack: Stack, counted: list[str], to: str) -> dict[str, int]:
    counted.clear()
    task_id = stack.sms(to, "counted")["task_id"]
    deadline = time.time() + 30
    while not _both_done(stack, task_id):
        assert time.time() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    kinds = Counter(_kind(s) for s in list(counted) if s not in POLLS)
    for kind in NOT_COUNTED:
        kinds.pop(kind, None)
    return dict(kinds)


def test_one_round_trip_costs_these_statements(
    stack: Stack, counted: list[str], db_url: str
) -> None:
    expected = EXPECTED if db_url.startswith("sqlite") else ON_POSTGRES
    warm = stack.sms("+15551230001", "warm-up")["task_id"]  # caches, first deploys
    deadline = time.time() + 30
    while not _both_done(stack, warm):
        assert time.time() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    # On a loaded machine a step can outlast the simulator's spacing, so a callback
    # takes the early path (other statements, all correct): up to three round trips,
    # one of which must cost exactly these.
    for attempt in range(3):
        kinds = _counted_round_trip(stack, counted, f"+1555123001{attempt}")
        if kinds == expected:
            return
    assert kinds == expected
