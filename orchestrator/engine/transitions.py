"""Applying what the interpreter decided, inside one transaction.

A transition writes the task's new node and data, its history events, the tasks it
copies, the modifications it sends, and the effects it finished, all or nothing. Entering
a wait node looks in the inbox first, so a callback that arrived early is applied now
(engine/deliveries.py, which also delivers callbacks on their own).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection

from orchestrator import secretdata
from orchestrator.engine.calls import CallerChanged, send_reply
from orchestrator.engine.definition import ProcessDefinition
from orchestrator.engine.deliveries import (
    Follow,
    Histories,
    apply_pending,
    deliver,
    none_held,
    settle_late,
)
from orchestrator.engine.early import look_before_insert
from orchestrator.engine.interpreter import place_at_start
from orchestrator.engine.runtime import Runtime, new_task_id
from orchestrator.engine.steps import (
    LOOP_LIMIT,
    Conflict,
    LogicFailure,
    Recheck,
    Reply,
    StepResult,
    enter_waiting,
)
from orchestrator.engine.targets import copy_target, modified_task
from orchestrator.logs import task_fields
from orchestrator.store import conversations
from orchestrator.store import effects as effect_store
from orchestrator.store import tasks as task_store
from orchestrator.store.aftercommit import after_commit
from orchestrator.store.records import CallbackRecord, Event, TaskRecord

log = logging.getLogger("orchestrator.engine")


def _look_up_targets(
    conn: Connection,
    rt: Runtime,
    task: TaskRecord,
    result: StepResult,
    busy: frozenset[str] = frozenset(),
) -> dict[str, TaskRecord]:
    """Resolve the step's copy and modification targets in its own transaction (before
    anything is written): a round trip then spends no read transaction on them. Returns
    the modified tasks found, by id, locked: their deliveries need not read them again
    (one record per task, so a second modification of it sees what the first did).
    ``busy``: tasks released in this transaction whose rows are not written yet (a
    followed step's, see ``follower``): one addressed here would be read as it was."""
    targets: dict[str, TaskRecord] = {}
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
            addressed = modified_task(conn, rt, *mod.lookup, for_update=True)
        except LogicFailure as exc:
            raise Recheck(task.id) from exc
        if addressed.id in busy:
            raise Recheck(task.id)
        mod.process_id, mod.task_id = addressed.process_id, addressed.id
        targets.setdefault(addressed.id, addressed)
        mod.lookup = None
    return targets


def commit_step(
    conn: Connection,
    rt: Runtime,
    task: TaskRecord,
    definition: ProcessDefinition,
    result: StepResult,
    owner: str,
    now: float,
    *,
    follow: Follow | None = None,
    sink: Histories | None = None,
    busy: frozenset[str] = frozenset(),
) -> list[TaskRecord]:
    """Write one transition. Returns tasks this worker should run next (the task itself
    if it is still active, copies, and tasks a modification released), all leased to it.
    It assigns attributes of ``task``, ``result`` and the result's copies and
    modifications, never changes a dict or list they hold: shallow copies of them are
    enough to run it again (attempts.for_attempt). ``follow``: tasks its modifications
    release take their next step here too (``follower``); ``sink``: where its events
    go, after those gathered before it (a delivery's), for the caller to write (else it
    writes them all at its end, in one statement); ``busy``: see _look_up_targets."""
    targets = _look_up_targets(conn, rt, task, result, busy)
    expected = task.rev
    runnable: list[TaskRecord] = []
    histories: Histories = sink if sink is not None else []
    # Copies placed straight into a wait node: they look for held callbacks once stored
    # (their "created" event first in the history), as their own step's commit would.
    entered: list[tuple[TaskRecord, tuple[str, str] | None]] = []
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
            data=dict(copy.data),  # a held callback merged in must not change the result
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
        by = "call_process" if copy.reply_to else "copy_task"
        detail = {"by": by, "parent_task_id": task.id}
        created = Event("created", None, child.node_id, detail)
        # A start node that only says "go to X": the child is stored at X as its first
        # step would leave it (one claim and one commit fewer per child).
        _pid, _v, child_definition = rt.definition(copy.version_id, conn)
        moved, listen = place_at_start(child, child_definition, waits=True, looks=True)
        looked = child.state == "waiting" and child.ref is not None
        if looked:
            # Callbacks that came before the child (a Twilio status for its sid): looked
            # for here, holding its ref's lock, and applied once it is stored.
            look_before_insert(conn, child)
        task_store.insert_task(conn, child, copy.data_text, looked=looked)
        # Written with the step's own events, in one statement.
        histories.append((child.id, [created, *moved]))
        if child.state == "active":
            runnable.append(child)
        else:
            entered.append((child, listen))
    fresh = True
    for mod in result.modifications:
        # Not stored yet (id 0): the delivery stores it with the status it gets there
        # (applied, pending, ...), in one INSERT. Its events are written with the
        # step's own, in one statement.
        cb = CallbackRecord(
            0,
            mod.process_id,
            "*",
            "modify",
            mod.data,
            now,
            "new",
            task_id=mod.task_id,
            source_ip=f"task:{task.id}",
        )
        # Once a delivery ran with followed steps, those may have written a task looked
        # up above (a released task's own modify_task): the others are read again.
        known = targets.get(mod.task_id) if fresh else None
        runnable.extend(
            deliver(conn, rt, cb, owner, now, task=known, sink=histories, follow=follow)
        )
        fresh = follow is None

    # An answer (api_call, a callback merged earlier) may bring secret-named values:
    # they are kept encrypted with the task, never in its data.
    task.data, hidden = secretdata.split(result.data)
    task.secrets = secretdata.closed(rt.vault, task.secrets, hidden)
    task.updated_at = now
    task.failures = 0  # the step went through
    events = list(result.events)
    if result.to is None:  # stays: a wait or delay node being (re-)entered
        enter_waiting(task, result.wake_at)
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
            enter_waiting(task, result.wake_at)
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
    histories.append((task.id, events))
    waits = task.state == "waiting" and definition.node(task.node_id).kind == "wait"
    if waits:
        none_held(conn, rt, task)
    # The data as the size check encoded it, unless the commit changed it since.
    text = result.data_text if task.data == result.data else None
    if not task_store.save_task(conn, task, expected, text):
        raise Conflict(task.id)
    for child, listen in entered:
        released = apply_pending(conn, rt, child, owner, now, histories)
        if released is not None:
            runnable.append(released)
        elif listen is not None:
            conversations.listen(conn, child.id, *listen, now)
    if task.state == "done":
        # After the save (which locks the row): a callback stored meanwhile either sees
        # the task done, or is found here. Either way it lands in the history.
        settle_late(conn, rt, task, now, histories)
        _finished(conn, rt, definition, task, now)
        if definition.listens:
            conversations.forget(conn, task.id)
    elif result.listen is not None:
        # Committed before the task's next step (which may send the SMS): a reply that
        # beats the task to its wait node is kept for it.
        conversations.listen(conn, task.id, *result.listen, now)
    if waits:
        released = apply_pending(conn, rt, task, owner, now, histories)
        if released is not None:
            task = released
        elif result.wait_listen is not None:
            conversations.listen(conn, task.id, *result.wait_listen, now)
    if sink is None:
        # Every event of the step, of the deliveries it made and of the tasks it
        # released and ran on (follow), in order, in one statement.
        task_store.add_histories(conn, histories, now)
    if task.state == "active":
        runnable.insert(0, task)
    return runnable


# How many released tasks deep a step's commit runs their next steps (``follower``).
FOLLOW_DEPTH = 3
RunNow = Callable[[TaskRecord, int, ProcessDefinition], StepResult | None]


def follower(
    conn: Connection,
    rt: Runtime,
    run_now: RunNow,
    owner: str,
    now: float,
    busy: frozenset[str] = frozenset(),
) -> Follow:
    """For ``deliver``: run the next step of a task it releases (leased to ``owner``,
    locked, not written yet) in the same transaction, when that step only shapes its
    result (``Interpreter.run_now``), and commit it: the task's row is written once, with
    where the step leaves it, instead of once released and once more by its step (a
    claim of its own, another transaction). The step is the one the worker would run:
    same events, same outcome; either both are committed or neither. When it cannot run
    here (an outside call, a lookup that fails, a task addressed that is itself released
    and not written yet) the delivery writes the released task as usual."""

    def follow(task: TaskRecord, sink: Histories) -> list[TaskRecord] | None:
        if len(busy) >= FOLLOW_DEPTH:
            return None
        process_id, _version, definition = rt.definition(task.version_id, conn)
        try:
            result = run_now(task, process_id, definition)
        except Exception:  # the worker runs the step again and reports it
            return None
        if result is None:
            return None
        mine = busy | {task.id}
        deeper = follower(conn, rt, run_now, owner, now, mine)
        try:
            return commit_step(
                conn, rt, task, definition, result, owner, now, follow=deeper, sink=sink, busy=mine
            )
        except Recheck:  # raised before anything is written
            return None

    return follow


def _finished(
    conn: Connection, rt: Runtime, definition: ProcessDefinition, task: TaskRecord, now: float
) -> None:
    outcome = task.outcome or "unknown"
    seconds = max(0.0, now - task.created_at)
    # Observed once the step's transaction commits (it may be rolled back and run again).
    duration = rt.metrics.task_duration(definition.slug, outcome)
    after_commit(conn, lambda: duration.observe(seconds))
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
