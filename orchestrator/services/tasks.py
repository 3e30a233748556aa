"""What the outside world can ask of the engine: create, modify and read tasks, read and
deploy processes (callbacks: ``self.callbacks``, services/callbacks.py). Used by the HTTP
API and the CLI alike; raises a domain error (``services/errors.py``) with a stable code
for every request it refuses, having changed nothing.

The entry points are coroutines: each runs its database part (a private synchronous
method, one transaction) where the runtime runs database work (``Runtime.run_db``)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from sqlalchemy import Connection

from orchestrator import secretdata
from orchestrator.engine import phones
from orchestrator.engine.deliveries import awaits_reply, deliver
from orchestrator.engine.interpreter import place_at_start
from orchestrator.engine.runtime import Runtime, new_task_id
from orchestrator.services import errors
from orchestrator.services.callbacks import CallbackInbox, storable
from orchestrator.services.processes import Processes, iso
from orchestrator.store import callbacks as inbox
from orchestrator.store import conversations
from orchestrator.store import tasks as task_store
from orchestrator.store.notify import notify
from orchestrator.store.records import CallbackRecord, Event, TaskRecord, dumps

MAX_LIST = 500


class Service(Processes):
    """Tasks and processes for the API, console and CLI; ``callbacks`` for callbacks."""

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        # Callbacks posted to wait nodes' URLs (services/callbacks.py).
        self.callbacks = CallbackInbox(rt)

    # -- tasks -----------------------------------------------------------------------
    def task_view(self, conn: Connection, task: TaskRecord) -> dict[str, Any]:
        process_id, version, definition = self.rt.definition(task.version_id, conn)
        node = definition.nodes.get(task.node_id)
        slug = self._slug(conn, process_id)
        return {
            "task_id": task.id,
            "process": slug,
            "conv_id": process_id,
            "version": version,
            "ref": task.ref,
            "node": {
                "id": task.node_id,
                "title": node.title if node else task.node_id,
                "kind": node.kind if node else None,
            },
            "state": task.state,
            "outcome": task.outcome,
            "data": secretdata.redact(task.data),
            "created_at": iso(task.created_at),
            "updated_at": iso(task.updated_at),
            "finished_at": iso(task.finished_at),
            "wake_at": iso(task.wake_at) if task.state == "waiting" else None,
            "parent_task_id": task.parent_task_id,
        }

    def _slug(self, conn: Connection, process_id: int) -> str:
        return self.rt.process(conn, process_id).slug

    async def create_task(
        self, process_key: str, ref: Any, data: Any, *, source: str = "api"
    ) -> tuple[dict[str, Any], bool]:
        """(task view, created). Same ref and same data as the latest task with that ref
        returns it (an idempotent retry); same ref, other data, unfinished task: a
        REF_CONFLICT."""
        # Grouped: it reads anew and changes none of its arguments, so it may start over.
        return await self.rt.run_db_grouped(self._create_task, process_key, ref, data, source)

    def _create_task(
        self, process_key: str, ref: Any, data: Any, source: str
    ) -> tuple[dict[str, Any], bool]:
        if ref is not None and (not isinstance(ref, str) or not 1 <= len(ref) <= 255):
            raise errors.Invalid("INVALID_REF", "ref must be a string of 1-255 characters")
        storable(ref, "ref")
        if not isinstance(data, dict):
            raise errors.Invalid("INVALID_DATA", "data must be a JSON object")
        encoded = dumps(data)
        if len(encoded.encode()) > self.rt.settings.max_task_bytes:
            raise errors.TooLarge(
                "TASK_TOO_LARGE", f"task data is over {self.rt.settings.max_task_bytes} bytes"
            )
        digest = hmac.new(self.rt.secret.encode(), encoded.encode(), hashlib.sha256).hexdigest()
        plain, hidden = secretdata.split(data)
        now = time.time()
        with self.rt.db.write() as conn:
            proc = self._process(conn, process_key)
            if ref is not None:
                existing = task_store.find_by_ref(conn, proc.id, ref)
                if existing is not None and existing.input_hash == digest:
                    return self.task_view(conn, existing), False
                if existing is not None and existing.state != "done":
                    raise errors.Conflict(
                        "REF_CONFLICT",
                        f"ref {ref!r} belongs to an unfinished task with other data",
                        {"task_id": existing.id},
                    )
            _pid, _v, definition = self.rt.definition(proc.version_id, conn)
            # Numbers as people type them ("+1 555 123 0001") are stored in E.164.
            plain = phones.normalise_inputs(definition.inputs, plain)
            task = TaskRecord(
                id=new_task_id(),
                process_id=proc.id,
                version_id=proc.version_id,
                node_id=definition.start,
                state="active",
                data=plain,
                created_at=now,
                updated_at=now,
                ref=ref,
                input_hash=digest,
                secrets=self.rt.vault.encrypt(json.dumps(hidden)) if hidden else None,
            )
            created = Event("created", None, task.node_id, {"by": source})
            # A start node that only says "go to X": the task is stored at X, as its
            # first step would leave it, with that step's history (one claim and one
            # commit fewer per task).
            moved, listen = place_at_start(task, definition, waits=True)
            try:
                task_store.insert_new_task(conn, task)
            except task_store.RefTaken as exc:
                raise errors.Conflict("REF_CONFLICT", f"ref {ref!r} is taken") from exc
            task_store.add_events(conn, task.id, [created, *moved], now)
            if listen is not None:
                # Placed in a wait_reply node (a task without ref: no callback can be
                # held for it, so there is none to look for): it listens from now.
                conversations.listen(conn, task.id, *listen, now)
            notify(conn)
            view = self.task_view(conn, task)
        self.rt.wake()
        return view, True

    async def get_task(self, task_id: str) -> dict[str, Any]:
        return await self.rt.run_db(self._get_task, task_id)

    def _get_task(self, task_id: str) -> dict[str, Any]:
        with self.rt.db.read() as conn:
            task = task_store.get_task(conn, task_id)
            if task is None:
                raise errors.NotFound("TASK_NOT_FOUND", f"no task {task_id!r}")
            return self.task_view(conn, task)

    async def history(self, task_id: str) -> list[dict[str, Any]]:
        return await self.rt.run_db(self._history, task_id)

    def _history(self, task_id: str) -> list[dict[str, Any]]:
        with self.rt.db.read() as conn:
            if task_store.get_task(conn, task_id) is None:
                raise errors.NotFound("TASK_NOT_FOUND", f"no task {task_id!r}")
            events = task_store.history(conn, task_id)
        for e in events:
            e["at"] = iso(e["at"])
        return events

    async def list_tasks(
        self,
        process_key: str,
        *,
        ref: str | None = None,
        node: str | None = None,
        state: str | None = None,
        outcome: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        since: float | None = None,
        until: float | None = None,
        data_has: list[tuple[str, ...]] | None = None,
        ids: list[str] | None = None,
    ) -> dict[str, Any]:
        """A process's tasks, newest first, by the filters given; ``next_cursor`` pages."""
        if state not in (None, "active", "waiting", "done"):
            raise errors.Invalid("INVALID_FILTER", "state must be active, waiting or done")
        if outcome not in (None, "success", "escalation"):
            raise errors.Invalid("INVALID_FILTER", "outcome must be success or escalation")
        if not 1 <= limit <= MAX_LIST:
            raise errors.Invalid("INVALID_FILTER", f"limit must be 1-{MAX_LIST}")
        for name, value in (("ref", ref), ("node", node), ("cursor", cursor)):
            storable(value, name)
        before = _decode_cursor(cursor) if cursor else None

        def page() -> tuple[list[dict[str, Any]], list[TaskRecord]]:
            with self.rt.db.read() as conn:
                proc = self._process(conn, process_key)
                rows = task_store.list_tasks(
                    conn,
                    proc.id,
                    ref=ref,
                    node=node,
                    state=state,
                    outcome=outcome,
                    limit=limit,
                    before=before,
                    since=since,
                    until=until,
                    data_has=data_has,
                    ids=ids,
                )
                return [self.task_view(conn, t) for t in rows], rows

        items, rows = await self.rt.run_db(page)
        next_cursor = f"{rows[-1].created_at!r}:{rows[-1].id}" if len(rows) == limit else None
        return {"tasks": items, "next_cursor": next_cursor}

    async def find_task(
        self, process_key: str | int, *, ref: str | None = None, task_id: str | None = None
    ) -> dict[str, Any]:
        """The task of this process with this id, or with this ref (the unfinished one,
        else the latest)."""
        return await self.rt.run_db(self._find_task, process_key, ref, task_id)

    def _find_task(
        self, process_key: str | int, ref: str | None, task_id: str | None
    ) -> dict[str, Any]:
        with self.rt.db.read() as conn:
            proc = self._process(conn, process_key)
            task = self._find(conn, proc.id, ref, task_id)
            if task is None:
                raise errors.NotFound("TASK_NOT_FOUND", "no such task in this process")
            return self.task_view(conn, task)

    @staticmethod
    def _find(
        conn: Connection,
        process_id: int,
        ref: str | None,
        task_id: str | None,
        *,
        for_update: bool = False,
    ) -> TaskRecord | None:
        storable(ref, "ref")
        storable(task_id, "task_id")
        if task_id is not None:
            task = task_store.get_task(conn, task_id, for_update=for_update)
            return task if task is not None and task.process_id == process_id else None
        if ref is None:
            return None
        return task_store.find_by_ref(conn, process_id, ref, for_update=for_update)

    async def modify_by_ref(
        self, process_key: str | int, ref: str, data: Any, *, source: str = "api"
    ) -> dict[str, Any]:
        """Corezoid's modify: merge data into the waiting task with this ref and release it."""
        return await self.modify(process_key, data, ref=ref, source=source)

    async def modify(
        self,
        process_key: str | int,
        data: Any,
        *,
        ref: str | None = None,
        task_id: str | None = None,
        source: str = "api",
    ) -> dict[str, Any]:
        """Merge data into the waiting task named by ``task_id`` or ``ref`` and release it."""
        if not isinstance(data, dict) or not data:
            raise errors.Invalid("INVALID_DATA", "data must be a non-empty JSON object")
        return await self.rt.run_db(self._modify, process_key, data, ref, task_id, source)

    def _modify(
        self,
        process_key: str | int,
        data: dict[str, Any],
        ref: str | None,
        task_id: str | None,
        source: str,
    ) -> dict[str, Any]:
        now = time.time()
        with self.rt.db.write() as conn:
            proc = self._process(conn, process_key)
            task = self._find(conn, proc.id, ref, task_id, for_update=True)
            if task is None or task.state == "done":
                name = f"id {task_id!r}" if task_id is not None else f"ref {ref!r}"
                raise errors.NotFound("TASK_NOT_FOUND", f"no unfinished task with {name}")
            if task.state != "waiting":
                raise errors.Conflict(
                    "TASK_NOT_WAITING",
                    f"task {task.id} is in node {task.node_id!r}, not waiting",
                )
            if awaits_reply(conn, self.rt, task):
                raise errors.Conflict(
                    "TASK_NOT_WAITING",
                    f"task {task.id} waits in node {task.node_id!r} for a called process",
                )
            sealed = secretdata.seal(self.rt.vault, data)
            cb_id = inbox.insert_callback(
                conn,
                process_id=proc.id,
                node_id="*",
                form="modify",
                payload=sealed,
                received_at=now,
                task_id=task.id,
                source_ip=source,
            )
            assert cb_id is not None
            cb = CallbackRecord(
                cb_id, proc.id, "*", "modify", sealed, now, "new", task_id=task.id, source_ip=source
            )
            # No owner: the released task is left for whichever engine claims it first.
            for released in deliver(conn, self.rt, cb, owner=None, now=now):
                task = released
            notify(conn)
            view = self.task_view(conn, task)
        self.rt.wake()
        return view


def _decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        at, task_id = cursor.rsplit(":", 1)
        return float(at), task_id
    except ValueError as exc:
        raise errors.Invalid("INVALID_CURSOR", "cursor is not one this API returned") from exc
