"""What the console asks beyond the REST API: search tasks by whatever an operator has at
hand (task id, ref, message sid, phone number) and a task's timeline including the
callbacks its copies received. Read-only; views come from ``Service.task_view``."""

from __future__ import annotations

import re
from typing import Any

from orchestrator.engine.service import Service, iso
from orchestrator.secretdata import redact
from orchestrator.store import processes as process_store
from orchestrator.store import tasks as task_store
from orchestrator.store.records import TaskRecord

SEARCH_LIMIT = 50
_TASK_ID = re.compile(r"^[0-9a-f]{24}\Z")
_SID = re.compile(r"^(SM|MM|CA)[0-9a-fA-F]{32}\Z")
_PHONE = re.compile(r"^\+?[0-9][0-9 ().-]{5,20}\Z")


def phone_needle(q: str) -> str | None:
    """The JSON string a phone number is stored as ("+15551230001"), if ``q`` is one."""
    if not _PHONE.match(q):
        return None
    digits = re.sub(r"[^0-9]", "", q)
    return f'"+{digits}"' if 6 <= len(digits) <= 15 else None


def search(service: Service, q: str) -> dict[str, Any]:
    """{"query", "matched_by": [...], "tasks": [views]} — newest first, at most
    SEARCH_LIMIT. A sid finds the "Getting callback" task (ref = sid) and its original."""
    q = q.strip()
    found: dict[str, TaskRecord] = {}
    matched: list[str] = []
    if not q or len(q) > 255:
        return {"query": q, "matched_by": matched, "tasks": []}
    with service.rt.db.read() as conn:
        if _TASK_ID.match(q):
            task = task_store.get_task(conn, q)
            if task is not None:
                found[task.id] = task
                matched.append("task id")
        by_ref = []
        for proc in process_store.list_processes(conn):
            by_ref += task_store.list_tasks(conn, proc.id, ref=q, limit=SEARCH_LIMIT)
        if by_ref:
            matched.append("ref")
        for task in by_ref:
            found.setdefault(task.id, task)
        if _SID.match(q):
            for task in by_ref:
                if task.parent_task_id and task.parent_task_id not in found:
                    parent = task_store.get_task(conn, task.parent_task_id)
                    if parent is not None:
                        found[parent.id] = parent
                        matched.append("message sid")
        needle = phone_needle(q)
        if needle is not None:
            hits = task_store.find_by_data_text(conn, needle, limit=SEARCH_LIMIT)
            if hits:
                matched.append("phone number")
            for task in hits:
                found.setdefault(task.id, task)
        ordered = sorted(found.values(), key=lambda t: (t.created_at, t.id), reverse=True)
        views = [service.task_view(conn, t) for t in ordered[:SEARCH_LIMIT]]
    return {"query": q, "matched_by": matched, "tasks": views}


def timeline(service: Service, task_id: str) -> dict[str, Any]:
    """The task, its events and those of the tasks copied from it (where Twilio's raw
    callbacks land), merged in time order; every detail redacted."""
    task = service.get_task(task_id)
    events = [{**e, "task_id": task_id, "own": True} for e in service.history(task_id)]
    with service.rt.db.read() as conn:
        records = task_store.children(conn, task_id)
        kids = [service.task_view(conn, t) for t in records]
        titles = {task_id: _titles(service, task_store.get_task(conn, task_id))}
        for kid, record in zip(kids, records, strict=True):
            titles[kid["task_id"]] = _titles(service, record)
            for e in task_store.history(conn, kid["task_id"]):
                if e["kind"] in ("callback", "callback_late", "logic_error"):
                    e["at"] = iso(e["at"])
                    events.append({**e, "task_id": kid["task_id"], "own": False})
    events.sort(key=lambda e: (e["at"] or "", e["id"]))
    for e in events:
        e["detail"] = redact(e["detail"])
        names = titles.get(e["task_id"], {})
        e["node_title"] = names.get(e["node_id"], e["node_id"])
        e["to_title"] = names.get(e["to_node_id"], e["to_node_id"])
    return {"task": task, "events": events, "children": kids}


def _titles(service: Service, task: TaskRecord | None) -> dict[str, str]:
    """Node id → title in the version the task runs on."""
    if task is None:
        return {}
    _pid, _version, definition = service.rt.definition(task.version_id)
    return {n.id: n.title for n in definition.nodes.values()}
