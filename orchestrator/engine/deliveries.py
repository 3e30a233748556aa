"""Callbacks meeting their tasks: delivering a stored callback, applying the ones that
arrived early when a task enters a wait node, and keeping late ones in the history of a
finished task. Each runs inside the caller's transaction (a delivery's own, or a step's
commit in transitions.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection

from orchestrator import secretdata
from orchestrator.engine.early import task_for_ref
from orchestrator.engine.runtime import Runtime
from orchestrator.engine.steps import Conflict
from orchestrator.logs import task_fields
from orchestrator.store import callbacks as inbox
from orchestrator.store import tasks as task_store
from orchestrator.store.aftercommit import after_commit
from orchestrator.store.records import CallbackRecord, Event, TaskRecord, dumps

log = logging.getLogger("orchestrator.engine")
# Events still to write, by task: a step's commit gathers those of the deliveries it
# makes with its own, and writes them all in one statement (task_store.add_histories).
Histories = list[tuple[str, list[Event]]]
# The step a delivery's released task takes next, run in the delivery's own transaction
# (transitions.follower): what commit_step returned, or None when that step cannot run
# there (the released task is then saved and runs as usual). Its events go to the sink.
Follow = Callable[[TaskRecord, Histories], list[TaskRecord] | None]


def _add_events(
    conn: Connection, sink: Histories | None, task_id: str, events: list[Event], now: float
) -> None:
    if sink is None:
        task_store.add_events(conn, task_id, events, now)
    else:
        sink.append((task_id, events))


def settle_late(
    conn: Connection, rt: Runtime, task: TaskRecord, now: float, sink: Histories | None = None
) -> None:
    """Callbacks that were waiting for a task that has now finished: kept as late. Only
    looked for when one may be held (``held_callbacks``, as the task's save read it)."""
    if not task.held_callbacks:
        return
    for cb in inbox.unsettled_for_task(conn, task.id, task.process_id, task.ref):
        if _settle(conn, cb, "ignored", now=now, task_id=task.id):
            _record_late(conn, rt, task, cb, now, sink)


def _record_late(
    conn: Connection,
    rt: Runtime,
    task: TaskRecord,
    cb: CallbackRecord,
    now: float,
    sink: Histories | None = None,
) -> None:
    """A callback for a finished task lands in its history, and in the history of the task
    it was copied from (the original a "Getting callback" copy follows), escalating nothing."""
    late = Event("callback_late", task.node_id, None, _cb_detail(rt, cb))
    _add_events(conn, sink, task.id, [late], now)
    if task.parent_task_id and task_store.get_task(conn, task.parent_task_id) is not None:
        detail = {**_cb_detail(rt, cb), "via_task_id": task.id}
        _add_events(
            conn, sink, task.parent_task_id, [Event("callback_late", None, None, detail)], now
        )


def apply_pending(
    conn: Connection,
    rt: Runtime,
    task: TaskRecord,
    owner: str,
    now: float,
    sink: Histories | None = None,
) -> TaskRecord | None:
    """Apply the first callback held for the wait node ``task`` has just entered (and
    saved: its row is locked, and ``held_callbacks`` is as the save read it). When none
    is held at all, the flag is cleared: the next wait node need not look."""
    if not task.held_callbacks:
        return None
    held = inbox.unsettled_for_task(conn, task.id, task.process_id, task.ref)
    if not held:
        task_store.callbacks_settled(conn, task)
        return None
    for cb in held:
        if cb.node_id not in ("*", task.node_id):
            continue  # for another wait node: still held
        if len(held) == 1:
            # The only one held, settled now: the release's save clears the flag.
            task.held_callbacks = 0
        released = _release(conn, rt, task, cb, owner, now, sink)
        if released is not None:
            return released
    return None


def none_held(conn: Connection, rt: Runtime, task: TaskRecord) -> None:
    """Before the save of a task entering a wait node, on SQLite: when no callback is
    held for it, its save clears ``held_callbacks`` (no statement of its own after it,
    apply_pending's). SQLite has one writer, so nothing can be stored for the task
    between this look and the save; on PostgreSQL a callback stored meanwhile would go
    unseen, so apply_pending looks after the save, which locks the row."""
    if rt.db.is_sqlite and task.held_callbacks:
        if not inbox.unsettled_for_task(conn, task.id, task.process_id, task.ref):
            task.held_callbacks = 0


def deliver(
    conn: Connection,
    rt: Runtime,
    cb: CallbackRecord,
    owner: str | None,
    now: float,
    *,
    task: TaskRecord | None = None,
    sink: Histories | None = None,
    follow: Follow | None = None,
) -> list[TaskRecord]:
    """Try to apply a stored callback to its task. An unknown task or one not yet waiting
    leaves it pending (it is applied when the task reaches the node); a finished task
    keeps it in its history as a late callback. ``task``: the callback's task, already
    read and locked in this transaction (a step's modify_task); ``sink``: where the
    events go when the caller writes them with its own (else they are written here).
    ``follow`` (with a sink and an owner): the released task's next step runs here too,
    so its row is written once, with where that step leaves it."""
    delivered = rt.callback_form(cb.form).deliver(conn, cb, owner, now)
    if delivered is not None:
        return delivered  # the form applies it its own way (an incoming SMS)
    if task is None:
        task = _addressee(conn, cb)
    if task is None:
        _settle(conn, cb, "pending", now=now)
        return []
    if task.state == "done":
        if _settle(conn, cb, "ignored", now=now, task_id=task.id):
            _record_late(conn, rt, task, cb, now, sink)
        return []
    if (
        task.state != "waiting"
        or cb.node_id not in ("*", task.node_id)
        or awaits_reply(conn, rt, task)
    ):
        if _settle(conn, cb, "pending", now=now, task_id=task.id):
            task_store.hold_callbacks(conn, task)
        return []
    inline = follow is not None and sink is not None and owner is not None
    released = _release(conn, rt, task, cb, owner, now, sink, save=not inline)
    if released is None:
        return []
    if inline:
        assert follow is not None and sink is not None
        ran = follow(released, sink)
        if ran is not None:
            return ran
        if not task_store.save_task(conn, released, released.rev):
            raise Conflict(released.id)
    return [released]


def _settle(
    conn: Connection, cb: CallbackRecord, status: str, *, now: float, task_id: str | None = None
) -> bool:
    """Move the callback on from new/pending (set_status: False when another worker did
    first). One not stored yet (id 0: a step's modify_task) is stored so, in one INSERT."""
    if cb.id:
        return inbox.set_status(conn, cb.id, status, now=now, task_id=task_id)
    cb_id = inbox.insert_callback(
        conn,
        process_id=cb.process_id,
        node_id=cb.node_id,
        form=cb.form,
        payload=cb.payload,
        received_at=cb.received_at,
        ref=cb.ref,
        task_id=cb.task_id,
        dedupe_key=cb.dedupe_key,
        source_ip=cb.source_ip,
        status=status,
        applied_at=now if status != "pending" else None,
        applied_task_id=task_id,
    )
    if cb_id is None:  # a duplicate (it has no dedupe key: cannot be)
        return False
    cb.id, cb.status = cb_id, status
    return True


def _addressee(conn: Connection, cb: CallbackRecord) -> TaskRecord | None:
    """The callback's task, locked (PostgreSQL), or None when there is none (yet)."""
    if cb.task_id:
        task = task_store.get_task(conn, cb.task_id, for_update=True)
        return task if task is not None and task.process_id == cb.process_id else None
    if cb.ref:
        return task_for_ref(conn, cb.process_id, cb.ref)
    return None


def awaits_reply(conn: Connection, rt: Runtime, task: TaskRecord) -> bool:
    """A task waiting in a call node is released by its reply (or time limit) only: a
    modification stays pending until it next enters a wait node."""
    return (
        task.state == "waiting" and rt.definition(task.version_id, conn)[2].node(task.node_id).calls
    )


def _release(
    conn: Connection,
    rt: Runtime,
    task: TaskRecord,
    cb: CallbackRecord,
    owner: str | None,
    now: float,
    sink: Histories | None = None,
    *,
    save: bool = True,
) -> TaskRecord | None:
    """Merge the callback into a waiting task and make it runnable (leased to ``owner``,
    or to nobody, so that any engine may claim it), unless its form refuses it now (a
    Twilio callback signed by another account than the sender's) or says it does not
    advance the task (a provider's status going backwards): then it is only recorded.
    Without ``save`` the released task is not written (its ``rev`` is still the row's):
    the caller writes it, with its next step (``follow``) or as it is."""
    form = rt.callback_form(cb.form)
    reason = form.rejection(conn, cb)
    if reason is not None:
        if _settle(conn, cb, "ignored", now=now, task_id=task.id):
            event = Event(
                "callback_rejected",
                task.node_id,
                None,
                {**_cb_detail(rt, cb), "reason": reason},
            )
            _add_events(conn, sink, task.id, [event], now)
        return None
    if not form.advances(cb.payload, task.data):
        if _settle(conn, cb, "ignored", now=now, task_id=task.id):
            after_commit(conn, rt.metrics.callbacks(cb.form, "ignored").inc)
            _add_events(
                conn,
                sink,
                task.id,
                [
                    Event(
                        "callback_ignored",
                        task.node_id,
                        None,
                        {**_cb_detail(rt, cb), "reason": "status does not advance"},
                    )
                ],
                now,
            )
        return None
    plain, hidden = secretdata.split(secretdata.unseal(rt.vault, cb.payload))
    for key in rt.plugins.hidden_fields(rt):
        plain.pop(key, None)
    limit = rt.settings.max_task_bytes
    merged = dumps({**task.data, **plain})  # the task's data once updated, as stored
    if len(merged.encode()) > limit:
        # Merged, the task would be over the size limit: recorded, not applied.
        if _settle(conn, cb, "ignored", now=now, task_id=task.id):
            reason = f"the task would be over {limit} bytes with it"
            event = Event(
                "callback_ignored", task.node_id, None, {**_cb_detail(rt, cb), "reason": reason}
            )
            _add_events(conn, sink, task.id, [event], now)
        return None
    if not _settle(conn, cb, "applied", now=now, task_id=task.id):
        return None  # another worker applied it
    # Counted once its transaction commits: an attempt rolled back and run again is not.
    after_commit(conn, rt.metrics.callbacks(cb.form, "applied").inc)
    if log.isEnabledFor(logging.INFO):
        slug = rt.process(conn, task.process_id).slug
        status = form.status(cb.payload)
        log.info(
            "callback applied in %s%s",
            task.node_id,
            f" (status {status})" if status is not None else "",
            extra=task_fields(task.id, slug, task.node_id, cb.ref),
        )
    expected = task.rev
    task.data.update(plain)
    task.secrets = secretdata.closed(rt.vault, task.secrets, hidden)
    task.state, task.entry, task.wake_at, task.hops = "active", "resume", None, 0
    if owner is None:
        task.lease_owner = task.lease_until = None
    else:
        task.lease_owner, task.lease_until = owner, now + rt.settings.lease_seconds
    task.updated_at = now
    _add_events(
        conn, sink, task.id, [Event("callback", task.node_id, None, _cb_detail(rt, cb))], now
    )
    if save and not task_store.save_task(conn, task, expected, merged):
        raise Conflict(task.id)
    return task


def _cb_detail(rt: Runtime, cb: CallbackRecord) -> dict[str, Any]:
    hidden = (secretdata.SEALED, *rt.plugins.hidden_fields(rt))
    return {
        "callback_id": cb.id,
        "form": cb.form,
        "source": cb.source_ip,
        "fields": {k: v for k, v in secretdata.split(cb.payload)[0].items() if k not in hidden},
    }
