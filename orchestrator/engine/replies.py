"""Incoming SMS, applied by the engine (SPEC §10).

A message first answers the oldest task listening on its conversation (the person's
``From`` texting our ``To``; see ``expect_reply`` / ``wait_reply``): it becomes a callback
of that task, applied at once if the task waits, else when it next waits (a reply may
beat the task to its wait node). With no listener, it starts a task in the process whose
URL received it, ``ref`` = MessageSid, the form fields as data.

The callback row is locked first, then the listening task, then the listener is taken
(deleted); only the transaction whose delete removed the listener owns it, so several
engines apply each message once.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Connection

from orchestrator.engine.definition import Logic
from orchestrator.engine.deliveries import deliver
from orchestrator.engine.runtime import Runtime, new_task_id
from orchestrator.engine.steps import LogicFailure
from orchestrator.engine.templates import render
from orchestrator.secretdata import split as split_secrets
from orchestrator.secretdata import unseal
from orchestrator.store import callbacks as inbox
from orchestrator.store import conversations
from orchestrator.store import tasks as task_store
from orchestrator.store.records import CallbackRecord, Event, TaskRecord

# Candidate listeners looked at per message before it starts a task of its own; each
# round drops listeners of finished tasks, so a long tail of them cannot loop forever.
MAX_ROUNDS = 20


# "+1 (555) 123-0001": a number as people write it, compared as Twilio writes it.
_LOOSE_NUMBER = re.compile(r"^\+[\d\s\-().]+\Z")
MAX_NUMBER = 64


def conversation_pair(person: Any, ours: Any) -> tuple[str, str]:
    """The pair a task listens on, from the rendered ``from`` and ``to`` of its logic;
    ValueError when either is not 1-64 characters."""
    pair = []
    for name, value in (("from", person), ("to", ours)):
        text = "" if value is None else str(value).strip()
        if _LOOSE_NUMBER.match(text):
            text = re.sub(r"[\s\-().]", "", text)
        if not 1 <= len(text) <= MAX_NUMBER:
            raise ValueError(f"{name} must give a phone number (1-{MAX_NUMBER} characters)")
        pair.append(text)
    return pair[0], pair[1]


def conversation(logic: Logic, ctx: dict[str, Any]) -> tuple[str, str]:
    """(the person's number, our number) of an expect_reply or wait_reply logic."""
    try:
        return conversation_pair(render(logic.get("from"), ctx), render(logic.get("to"), ctx))
    except ValueError as exc:
        fields = {"error": "BAD_CONVERSATION", "code": "BAD_CONVERSATION"}
        raise LogicFailure({**fields, "message": f"{logic.type}: {exc}"}) from exc


def reply_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """What a reply writes onto the listening task."""
    out: dict[str, Any] = {
        "reply": str(fields.get("Body") or ""),
        "reply_sid": fields.get("MessageSid") or fields.get("SmsSid"),
        "reply_from": fields.get("From"),
        "reply_to": fields.get("To"),
    }
    media = media_urls(fields)
    if media:
        out["reply_media"] = media
    return out


def media_urls(fields: dict[str, Any]) -> list[str]:
    try:
        count = int(fields.get("NumMedia") or 0)
    except (TypeError, ValueError):
        count = 0
    return [
        str(fields[f"MediaUrl{i}"]) for i in range(min(count, 10)) if fields.get(f"MediaUrl{i}")
    ]


def deliver_incoming(
    conn: Connection, rt: Runtime, cb: CallbackRecord, owner: str | None, now: float
) -> list[TaskRecord]:
    """Apply one stored incoming message; the tasks it made runnable (leased to owner)."""
    if not inbox.lock_new(conn, cb.id):
        return []  # another engine has it
    fields = unseal(rt.vault, cb.payload)
    person, ours = str(fields.get("From") or ""), str(fields.get("To") or "")
    for _ in range(MAX_ROUNDS):
        candidates = conversations.oldest(conn, person, ours)
        if not candidates:
            break
        for task_id in candidates:
            task = task_store.get_task(conn, task_id, for_update=True)
            if not conversations.take(conn, task_id, person, ours):
                continue  # another engine gave it a message first
            if task is None or task.state == "done":
                continue  # a listener left behind; now gone
            payload = reply_fields(fields)
            inbox.readdress(conn, cb.id, form="reply", task_id=task.id, payload=payload)
            reply = CallbackRecord(
                cb.id,
                task.process_id,
                "*",
                "reply",
                payload,
                cb.received_at,
                "new",
                task_id=task.id,
                source_ip=cb.source_ip,
            )
            return deliver(conn, rt, reply, owner, now)
    return _start_task(conn, rt, cb, fields, owner, now)


def _start_task(
    conn: Connection,
    rt: Runtime,
    cb: CallbackRecord,
    fields: dict[str, Any],
    owner: str | None,
    now: float,
) -> list[TaskRecord]:
    proc = rt.process(conn, cb.process_id)
    if cb.ref is not None:
        existing = task_store.find_by_ref(conn, proc.id, cb.ref)
        if existing is not None:  # the same message, stored again (a retry, days later)
            inbox.set_status(conn, cb.id, "ignored", now=now, task_id=existing.id)
            return []
    _pid, _v, definition = rt.definition(proc.version_id, conn)
    plain, _hidden = split_secrets(fields)
    task = TaskRecord(
        id=new_task_id(),
        process_id=proc.id,
        version_id=proc.version_id,
        node_id=definition.start,
        state="active",
        data=plain,
        created_at=now,
        updated_at=now,
        ref=cb.ref,
        lease_owner=owner,
        lease_until=now + rt.settings.lease_seconds if owner else None,
    )
    created = Event("created", None, task.node_id, {"by": "incoming_sms", "callback_id": cb.id})
    # A start node that only says "go to X": the task is stored at X, as its first step
    # would leave it, with that step's history (as a task created through the API). Its
    # ref (the MessageSid) keeps it out of a wait node: see place_at_start. (Imported
    # here: the interpreter imports this module for ``conversation``.)
    from orchestrator.engine.interpreter import place_at_start

    moved, listen = place_at_start(task, definition, waits=True)
    task_store.insert_task(conn, task)
    task_store.add_events(conn, task.id, [created, *moved], now)
    if listen is not None:
        conversations.listen(conn, task.id, *listen, now)
    inbox.set_status(conn, cb.id, "applied", now=now, task_id=task.id)
    return [task] if task.state == "active" else []
