"""Applying what the interpreter decided, and callbacks, inside one transaction each.

A transition writes the task's new node and data, its history events, the tasks it
copies, the modifications it sends, and the effects it finished, all or nothing. Entering
a wait node looks in the inbox first, so a callback that arrived early is applied now.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Connection

from orchestrator import secretdata
from orchestrator.engine.calls import CallerChanged, send_reply
from orchestrator.engine.definition import ProcessDefinition
from orchestrator.engine.runtime import Runtime, new_task_id
from orchestrator.engine.steps import LOOP_LIMIT, LogicFailure, Reply, StepResult
from orchestrator.engine.targets import copy_target, modify_target
from orchestrator.logs import task_fields
from orchestrator.store import callbacks as inbox
from orchestrator.store import conversations
from orchestrator.store import effects as effect_store
from orchestrator.store import tasks as task_store
from orchestrator.store.records import CallbackRecord, Event, TaskRecord, dumps

log = logging.getLogger("orchestrator.engine")


class Conflict(RuntimeError):
    """The task changed under us (its lease was lost); the step is abandoned. ``effects``
    carries what the abandoned step learnt from Twilio, so it can still be recorded."""

    def __init__(self, task_id: str) -> None:
        super().__init__(task_id)
        self.effects: list[tuple[int, dict[str, Any]]] = []
        self.step = 0  # the step those effects belong to


class Recheck(Conflict):
    """A check made in the commit (a ``modify_task`` target, a ``copy_task``'s process
    and quotas) failed: nothing was
    written; run the step again with its lookups up front (``StepResult.careful``), so
    the failure takes the logic's error path. ``effects`` as for ``Conflict``."""


def _look_up_targets(conn: Connection, rt: Runtime, task: TaskRecord, result: StepResult) -> None:
    """Resolve the step's copy and modification targets in its own transaction (before
    anything is written): a round trip then spends no read transaction on them."""
    for copy in result.copies:
        if copy.check is None:
            continue
        process_key, pending = copy.check
        try:
            found = copy_target(conn, rt, process_key, copy.ref, task, pending)
        except LogicFailure as exc:
            raise Recheck(task.id) from exc
        copy.process_id, copy.version_id, copy.start = found
        copy.check = None
    for mod in result.modifications:
        if mod.lookup is None:
            continue
        try:
            mod.process_id, mod.task_id = modify_target(conn, rt, *mod.lookup)
        except LogicFailure as exc:
            raise Recheck(task.id) from exc
        mod.lookup = None


def commit_step(
    conn: Connection,
    rt: Runtime,
    task: TaskRecord,
    definition: ProcessDefinition,
    result: StepResult,
    owner: str,
    now: float,
) -> list[TaskRecord]:
    """Write one transition. Returns tasks this worker should run next (the task itself
    if it is still active, copies, and tasks a modification released), all leased to it."""
    _look_up_targets(conn, rt, task, result)
    expected = task.rev
    runnable: list[TaskRecord] = []
    histories: list[tuple[str, list[Event]]] = []
    for index, outcome in result.effects_done:
        sealed = secretdata.seal(rt.vault, outcome)
        effect_store.finish(conn, task.id, task.step, index, sealed, now)
    for copy in result.copies:
        child = TaskRecord(
            id=new_task_id(),
            process_id=copy.process_id,
            version_id=copy.version_id,
            node_id=copy.start,
            state="active",
            data=copy.data,
            created_at=now,
            updated_at=now,
            ref=copy.ref,
            parent_task_id=copy.parent_task_id,
            lease_owner=owner,
            lease_until=now + rt.settings.lease_seconds,
            reply_to=copy.reply_to,
            root_id=task.root_id or task.id,
            generation=task.generation + 1,
        )
        task_store.insert_task(conn, child)
        by = "call_process" if copy.reply_to else "copy_task"
        detail = {"by": by, "parent_task_id": task.id}
        # Written with the step's own events, in one statement.
        histories.append((child.id, [Event("created", None, child.node_id, detail)]))
        runnable.append(child)
    for mod in result.modifications:
        cb_id = inbox.insert_callback(
            conn,
            process_id=mod.process_id,
            node_id="*",
            form="modify",
            payload=mod.data,
            received_at=now,
            task_id=mod.task_id,
            source_ip=f"task:{task.id}",
        )
        if cb_id is not None:
            cb = CallbackRecord(
                cb_id,
                mod.process_id,
                "*",
                "modify",
                mod.data,
                now,
                "new",
                task_id=mod.task_id,
                source_ip=f"task:{task.id}",
            )
            runnable.extend(deliver(conn, rt, cb, owner, now))

    # An answer (api_call, a callback merged earlier) may bring secret-named values:
    # they are kept encrypted with the task, never in its data.
    task.data, hidden = secretdata.split(result.data)
    task.secrets = secretdata.closed(rt.vault, task.secrets, hidden)
    task.updated_at = now
    task.failures = 0  # the step went through
    events = list(result.events)
    if result.to is None:  # stays: a wait or delay node being (re-)entered
        _enter_waiting(task, result.wake_at)
    else:
        target = result.to
        task.hops += 1
        if task.hops > LOOP_LIMIT:
            target = definition.default_escalation
            task.data.update(
                {
                    "error": "LOOP_LIMIT",
                    "code": "LOOP_LIMIT",
                    "message": f"more than {LOOP_LIMIT} transitions without waiting",
                }
            )
            events.append(
                Event(
                    "logic_error",
                    task.node_id,
                    target,
                    {"error": "LOOP_LIMIT", "message": task.data["message"]},
                )
            )
            result.wake_at = None
        events.append(Event("transition", task.node_id, target))
        task.node_id = target
        task.step += 1
        task.entry = "enter"
        node = definition.node(target)
        if node.is_final and task.reply_to and result.reply is None:
            # A called task that ends without replying answers with how it ended.
            result.reply = Reply(dict(task.data), exception=node.kind != "success")
        if node.is_final:
            task.state = "done"
            task.outcome = "success" if node.kind == "success" else "escalation"
            task.finished_at = now
            task.lease_owner = task.lease_until = task.wake_at = None
            task.secrets = None  # a finished task needs no credentials
        elif node.kind in ("wait", "delay"):
            _enter_waiting(task, result.wake_at)
        else:
            task.state = "active"
    if result.reply is not None:
        if task.reply_to:
            try:
                callers, sent = send_reply(conn, rt, task, result.reply, owner, now)
            except CallerChanged as exc:
                raise Conflict(task.id) from exc
            runnable.extend(callers)
            events.append(sent)
        else:
            reason = "not started by call_process, or already replied"
            events.append(Event("reply_ignored", task.node_id, None, {"reason": reason}))
    task_store.add_histories(conn, [*histories, (task.id, events)], now)
    if not task_store.save_task(conn, task, expected):
        raise Conflict(task.id)
    if task.state == "done":
        # After the save (which locks the row): a callback stored meanwhile either sees
        # the task done, or is found here. Either way it lands in the history.
        _settle_late(conn, rt, task, now)
        _finished(rt, definition, task, now)
        if definition.listens:
            conversations.forget(conn, task.id)
    elif result.listen is not None:
        # Committed before the task's next step (which may send the SMS): a reply that
        # beats the task to its wait node is kept for it.
        conversations.listen(conn, task.id, *result.listen, now)
    if task.state == "waiting" and definition.node(task.node_id).kind == "wait":
        released = _apply_pending(conn, rt, task, owner, now)
        if released is not None:
            task = released
        elif result.wait_listen is not None:
            conversations.listen(conn, task.id, *result.wait_listen, now)
    if task.state == "active":
        runnable.insert(0, task)
    return runnable


def _finished(rt: Runtime, definition: ProcessDefinition, task: TaskRecord, now: float) -> None:
    outcome = task.outcome or "unknown"
    rt.metrics.task_duration(definition.slug, outcome).observe(max(0.0, now - task.created_at))
    if log.isEnabledFor(logging.INFO):
        log.info(
            "task finished in %s (%s)",
            task.node_id,
            outcome,
            extra=task_fields(
                task.id, definition.slug, task.node_id, _sid(task.data), outcome=outcome
            ),
        )


def _sid(data: dict[str, Any]) -> str | None:
    sid = data.get("sid") or data.get("MessageSid") or data.get("CallSid")
    return sid if isinstance(sid, str) else None


def _settle_late(conn: Connection, rt: Runtime, task: TaskRecord, now: float) -> None:
    """Callbacks that were waiting for a task that has now finished: kept as late."""
    for cb in inbox.unsettled_for_task(conn, task.id, task.process_id, task.ref):
        if inbox.set_status(conn, cb.id, "ignored", now=now, task_id=task.id):
            _record_late(conn, rt, task, cb, now)


def _record_late(
    conn: Connection, rt: Runtime, task: TaskRecord, cb: CallbackRecord, now: float
) -> None:
    """A callback for a finished task lands in its history, and in the history of the task
    it was copied from (the original a "Getting callback" copy follows), escalating nothing."""
    late = Event("callback_late", task.node_id, None, _cb_detail(rt, cb))
    task_store.add_events(conn, task.id, [late], now)
    if task.parent_task_id and task_store.get_task(conn, task.parent_task_id) is not None:
        detail = {**_cb_detail(rt, cb), "via_task_id": task.id}
        task_store.add_events(
            conn, task.parent_task_id, [Event("callback_late", None, None, detail)], now
        )


def _enter_waiting(task: TaskRecord, wake_at: float | None) -> None:
    task.state = "waiting"
    task.wake_at = wake_at
    task.hops = 0
    task.lease_owner = task.lease_until = None


def _apply_pending(
    conn: Connection, rt: Runtime, task: TaskRecord, owner: str, now: float
) -> TaskRecord | None:
    for cb in inbox.pending_for_task(conn, task.id, task.process_id, task.ref, task.node_id):
        released = _release(conn, rt, task, cb, owner, now)
        if released is not None:
            return released
    return None


def deliver(
    conn: Connection, rt: Runtime, cb: CallbackRecord, owner: str | None, now: float
) -> list[TaskRecord]:
    """Try to apply a stored callback to its task. An unknown task or one not yet waiting
    leaves it pending (it is applied when the task reaches the node); a finished task
    keeps it in its history as a late callback."""
    delivered = rt.callback_form(cb.form).deliver(conn, cb, owner, now)
    if delivered is not None:
        return delivered  # the form applies it its own way (an incoming SMS)
    task: TaskRecord | None
    if cb.task_id:
        task = task_store.get_task(conn, cb.task_id, for_update=True)
        if task is not None and task.process_id != cb.process_id:
            task = None
    elif cb.ref:
        task = task_store.find_by_ref(conn, cb.process_id, cb.ref, for_update=True)
    else:
        task = None
    if task is None:
        inbox.set_status(conn, cb.id, "pending", now=now)
        return []
    if task.state == "done":
        if inbox.set_status(conn, cb.id, "ignored", now=now, task_id=task.id):
            _record_late(conn, rt, task, cb, now)
        return []
    if (
        task.state != "waiting"
        or cb.node_id not in ("*", task.node_id)
        or awaits_reply(conn, rt, task)
    ):
        inbox.set_status(conn, cb.id, "pending", now=now, task_id=task.id)
        return []
    released = _release(conn, rt, task, cb, owner, now)
    return [released] if released is not None else []


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
) -> TaskRecord | None:
    """Merge the callback into a waiting task and make it runnable (leased to ``owner``,
    or to nobody, so that any engine may claim it), unless its form refuses it now (a
    Twilio callback signed by another account than the sender's) or says it does not
    advance the task (a provider's status going backwards): then it is only recorded."""
    form = rt.callback_form(cb.form)
    reason = form.rejection(conn, cb)
    if reason is not None:
        if inbox.set_status(conn, cb.id, "ignored", now=now, task_id=task.id):
            event = Event(
                "callback_rejected",
                task.node_id,
                None,
                {**_cb_detail(rt, cb), "reason": reason},
            )
            task_store.add_events(conn, task.id, [event], now)
        return None
    if not form.advances(cb.payload, task.data):
        if inbox.set_status(conn, cb.id, "ignored", now=now, task_id=task.id):
            rt.metrics.callbacks(cb.form, "ignored").inc()
            task_store.add_events(
                conn,
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
    if len(dumps({**task.data, **plain}).encode()) > limit:
        # Merged, the task would be over the size limit: recorded, not applied.
        if inbox.set_status(conn, cb.id, "ignored", now=now, task_id=task.id):
            reason = f"the task would be over {limit} bytes with it"
            event = Event(
                "callback_ignored", task.node_id, None, {**_cb_detail(rt, cb), "reason": reason}
            )
            task_store.add_events(conn, task.id, [event], now)
        return None
    if not inbox.set_status(conn, cb.id, "applied", now=now, task_id=task.id):
        return None  # another worker applied it
    rt.metrics.callbacks(cb.form, "applied").inc()
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
    task_store.add_events(
        conn, task.id, [Event("callback", task.node_id, None, _cb_detail(rt, cb))], now
    )
    if not task_store.save_task(conn, task, expected):
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
