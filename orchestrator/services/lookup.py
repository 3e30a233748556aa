"""What the console asks beyond the REST API: search tasks by whatever an operator has at
hand (task id, ref, message sid, phone number), a process's tasks by the console's
filters, a task's timeline including the callbacks its copies received (and the stamp
its open page polls), a process's labelled links. Read-only; views come from
``Service.task_view``. Coroutines: each reading runs where database work runs."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from orchestrator.secretdata import redact
from orchestrator.services.errors import Invalid
from orchestrator.services.graph import edges as definition_edges
from orchestrator.services.processes import iso
from orchestrator.services.tasks import Service
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


async def search(service: Service, q: str) -> dict[str, Any]:
    """{"query", "matched_by": [...], "tasks": [views]} — newest first, at most
    SEARCH_LIMIT. A sid finds the "Getting callback" task (ref = sid) and its original."""
    return await service.rt.run_db(_search, service, q.strip())


def _search(service: Service, q: str) -> dict[str, Any]:
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


async def timeline(service: Service, task_id: str) -> dict[str, Any]:
    """The task, its events and those of the tasks copied from it (where Twilio's raw
    callbacks land), merged in time order; every detail redacted."""
    task = await service.get_task(task_id)
    events = [{**e, "task_id": task_id, "own": True} for e in await service.history(task_id)]
    kids, titles = await service.rt.run_db(_children, service, task_id, events)
    events.sort(key=lambda e: (e["at"] or "", e["id"]))
    for e in events:
        e["detail"] = redact(e["detail"])
        names = titles.get(e["task_id"], {})
        e["node_title"] = names.get(e["node_id"], e["node_id"])
        e["to_title"] = names.get(e["to_node_id"], e["to_node_id"])
    return {"task": task, "events": events, "children": kids}


def _children(
    service: Service, task_id: str, events: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str, dict[str, str]]]:
    """The views of the tasks copied from this one (their callback and error events
    added to ``events``), and the node titles of each task by id."""
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
    return kids, titles


def _titles(service: Service, task: TaskRecord | None) -> dict[str, str]:
    """Node id → title in the version the task runs on."""
    if task is None:
        return {}
    _pid, _version, definition = service.rt.definition(task.version_id)
    return {n.id: n.title for n in definition.nodes.values()}


TASK_FILTERS = ("state", "outcome", "node", "since", "until", "code", "q")


def _when(value: str, name: str) -> float:
    """A time filter: ISO 8601 (a date, or a date and time; UTC unless it says) or Unix."""
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise Invalid(
            "INVALID_FILTER", f"{name} must be a date and time, like 2026-12-05T09:30"
        ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


async def filtered_tasks(
    service: Service, process_key: str, filters: dict[str, str], *, limit: int, cursor: str | None
) -> dict[str, Any]:
    """A process's tasks newest first, by the console's filters (empty ones ignored):
    state or outcome, node, created since/until, error code, and q — a ref, a message
    sid (the task that sent it and its "Getting callback" copy) or a phone number."""
    f = {k: v.strip() for k, v in filters.items() if k in TASK_FILTERS and v and v.strip()}
    data_has: list[tuple[str, ...]] = []
    ref = None
    ids: list[str] | None = None
    q = f.get("q")
    if q:
        needle = phone_needle(q)
        if needle is not None:
            data_has.append((needle,))
        elif _SID.match(q):
            # The sid is the ref of the "Getting callback" copy (indexed): its parent is
            # the task that sent it. Only without such a copy is the data scanned.
            ids = await service.rt.run_db(_sid_tasks, service, q) or None
            if not ids:
                data_has.append((f'"sid":"{q}"', f'"MessageSid":"{q}"', f'"CallSid":"{q}"'))
        else:
            ref = q
    code = f.get("code")
    if code:
        forms = [f'"code":"{code}"']
        if code.isdigit():
            forms.append(f'"code":{code},')
            forms.append(f'"code":{code}}}')
        data_has.append(tuple(forms))
    state = f.get("state")
    outcome = None
    if state in ("success", "escalation"):  # the two ways to be done
        state, outcome = "done", state
    return await service.list_tasks(
        process_key,
        ref=ref,
        node=f.get("node"),
        state=state,
        outcome=outcome,
        limit=limit,
        cursor=cursor,
        since=_when(f["since"], "since") if "since" in f else None,
        until=_when(f["until"], "until") if "until" in f else None,
        data_has=data_has or None,
        ids=ids,
    )


def _sid_tasks(service: Service, sid: str) -> list[str]:
    """Ids of the tasks with ref ``sid`` (in any process) and of their parents."""
    out: list[str] = []
    with service.rt.db.read() as conn:
        for proc in process_store.list_processes(conn):
            for task in task_store.list_tasks(conn, proc.id, ref=sid, limit=SEARCH_LIMIT):
                out.append(task.id)
                if task.parent_task_id:
                    out.append(task.parent_task_id)
    return out


async def live_stamp(service: Service, task_id: str) -> dict[str, Any]:
    """What the open task page polls: it redraws when ``stamp`` changes."""
    t = await timeline(service, task_id)
    last = max((e["id"] for e in t["events"]), default=0)
    task = t["task"]
    return {
        "stamp": f"{task['updated_at']}:{len(t['events'])}:{last}",
        "state": task["state"],
        "outcome": task["outcome"],
        "node": task["node"],
    }


async def edges(service: Service, process_key: str) -> list[tuple[str, str, str, bool]]:
    """The current version's links with their labels (services/graph.py)."""
    return await service.rt.run_db(_edges, service, process_key)


def _edges(service: Service, process_key: str) -> list[tuple[str, str, str, bool]]:
    with service.rt.db.read() as conn:
        proc = service.rt.process(conn, process_key)
    return definition_edges(service.rt.definition(proc.version_id)[2])


async def node_choices(service: Service, task_id: str) -> list[dict[str, Any]]:
    """The nodes of a task's version (id, title, kind): where a repair may send it."""
    return await service.rt.run_db(_node_choices, service, task_id)


def _node_choices(service: Service, task_id: str) -> list[dict[str, Any]]:
    with service.rt.db.read() as conn:
        task = task_store.get_task(conn, task_id)
    if task is None:
        return []
    _pid, _v, definition = service.rt.definition(task.version_id)
    return [{"id": n.id, "title": n.title, "kind": n.kind} for n in definition.nodes.values()]
