"""Callbacks that come before their task: a task with a ref placed in its wait node
when it is created (interpreter.place_at_start with ``looks``: the "Getting callback"
copy of an SMS, whose ref is the message sid) looks for them in its creating
transaction, and a delivery that finds no task for a ref looks again under a lock.

A Twilio status callback is stored ``new`` on receipt (its own transaction R), and then
delivered (transaction D, engine/deliveries.deliver): D finds the task by ref, or finds
none and keeps the callback ``pending`` (an orphan, applied when its task looks). The
task is created by a step's commit (transaction C, on another engine maybe). Without the
lock below C's look could miss a callback: on PostgreSQL (READ COMMITTED, every
statement sees what was committed when it started)

    C: look for callbacks of ref r (none yet)
    R: store the callback for r, commit
    D: find the task of r (C's, not committed: none); keep the callback pending; commit
    C: commit                      -> the task waits for a callback kept as an orphan

which is why such a task used to take its start step (a claim and a transaction of its
own, after C) to enter its wait node and look there. Instead, per ref ``lock_ref``
(PostgreSQL: a transaction-scoped advisory lock of (process, hash of ref)): C takes it
before it looks, and D takes it when it finds no task, then looks for the task again.
D keeps a callback as an orphan only when its second look, made holding the lock, finds
no task. Either D held the lock before C took it: D committed (the orphan stored) before
C's lock returned, so C's look, a later statement, sees the orphan and applies it. Or D
took the lock after C's commit released it: D's second look, a later statement, sees
C's task. (D cannot take it while C holds it.) A callback whose R commits before C's
look is seen by C's look as ``new`` or ``pending``: C applies it (set_status moves it
on only from new/pending, so a D running later changes nothing), or keeps the task's
``held_callbacks`` set when it is for another node. One whose R commits after C's look
is delivered by a D that starts after that commit: it finds C's task, at once or after
waiting for the lock.

- Several engines: the lock is in the database, whichever process C and D run in; a
  ref hash shared by two refs only makes one wait for the other.
- C rolled back (a group commit batch starting over, a deadlock, SIGKILL): its lock
  goes with it, D finds no task and keeps the orphan; C's step runs again (its Twilio
  send kept by its effect record), its copy is created again, and its look finds it.
- SIGKILL after C's commit: nothing is left to do, the look was part of C.
- Deadlock: a D in a transaction of its own holds no lock before it takes the ref's
  (it found nothing to lock); C takes it before touching any callback. In a group
  commit batch (a claim's deliveries, other jobs) row and ref locks may already be
  held: a wait past the batch's lock_timeout (100 ms, advisory locks included) rolls
  the batch back and its jobs run again (store/group_commit.py); PostgreSQL breaks any
  other cycle, and the transaction is retried (db.retry).
- A ref used again (a process copying twice with one ref, the first copy finished): D
  finding only the finished task takes the lock and looks again too, or the callback
  would be recorded as late on the old task while the new one is committing.
- Rolling upgrades: an engine older than this look keeps orphans without the lock, so
  every engine must run this code before copies are placed at creation (see
  docs/production.md, "Shutdown and upgrades").

SQLite has one writer: C's look, in C, cannot be overtaken by a D; no lock, no second
look. The task is stored with ``held_callbacks`` as its look found it (set only when a
callback is held), so a round trip writes no statement of its own to clear it.
"""

from __future__ import annotations

from sqlalchemy import Connection

from orchestrator.store import callbacks as inbox
from orchestrator.store import tasks as task_store
from orchestrator.store.records import TaskRecord


def look_before_insert(conn: Connection, task: TaskRecord) -> None:
    """Before ``task`` (with a ref, placed in its wait node, not stored yet) is inserted:
    sets ``held_callbacks`` as callbacks already stored for its ref say; insert it with
    ``looked``, and after it is stored apply them (deliveries.apply_pending, which looks
    only when one is held)."""
    assert task.ref is not None
    task_store.lock_ref(conn, task.process_id, task.ref)
    held = inbox.unsettled_for_task(conn, task.id, task.process_id, task.ref)
    task.held_callbacks = 1 if held else 0


def task_for_ref(conn: Connection, process_id: int, ref: str) -> TaskRecord | None:
    """The task with this ref (task_store.find_by_ref), locked; when there is none or
    only a finished one, on PostgreSQL, looked for again holding the ref's lock: a task
    being created with it may be committing (see above)."""
    task = task_store.find_by_ref(conn, process_id, ref, for_update=True)
    if (task is None or task.state == "done") and conn.dialect.name == "postgresql":
        task_store.lock_ref(conn, process_id, ref)
        task = task_store.find_by_ref(conn, process_id, ref, for_update=True)
    return task
