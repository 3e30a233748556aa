"""What the outside world can ask of the engine: create, modify and read tasks, read
processes (callbacks: ``self.callbacks``, services/callbacks.py). Used by the HTTP API and
the CLI alike; raises a domain error (``services/errors.py``) with a stable code for every
request it refuses, having changed nothing."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from orchestrator import secretdata
from orchestrator.engine import phones
from orchestrator.engine.runtime import NotFound, Runtime, new_task_id
from orchestrator.engine.transitions import awaits_reply, deliver
from orchestrator.services import errors
from orchestrator.services.callbacks import CallbackInbox, storable
from orchestrator.store import callbacks as inbox
from orchestrator.store import processes as process_store
from orchestrator.store import tasks as task_store
from orchestrator.store.notify import notify
from orchestrator.store.records import CallbackRecord, Event, ProcessRecord, TaskRecord, dumps

MAX_LIST = 500


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")


class Service:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        # Callbacks posted to wait nodes' URLs (services/callbacks.py).
        self.callbacks = CallbackInbox(rt)

    # -- processes -----------------------------------------------------------------
    def _process(self, conn: Connection, key: str | int) -> ProcessRecord:
        if isinstance(key, str):
            storable(key, "the process")
        try:
            return self.rt.process(conn, key)
        except NotFound as exc:
            raise errors.NotFound("PROCESS_NOT_FOUND", f"no process {key!r}") from exc

    def list_processes(self) -> list[dict[str, Any]]:
        with self.rt.db.read() as conn:
            return [self._process_summary(conn, p) for p in process_store.list_processes(conn)]

    def _process_summary(self, conn: Connection, p: ProcessRecord) -> dict[str, Any]:
        return {
            "conv_id": p.id,
            "slug": p.slug,
            "title": p.title,
            "version": p.current_version,
            "counts": task_store.state_counts(conn, p.id),
        }

    def process_inputs(self) -> list[dict[str, Any]]:
        """Every process with its declared inputs (for the API description)."""
        with self.rt.db.read() as conn:
            records = process_store.list_processes(conn)
        out = []
        for p in records:
            definition = self.rt.definition(p.version_id)[2]
            out.append(
                {
                    "slug": p.slug,
                    "title": p.title,
                    "description": definition.description,
                    "inputs": list(definition.inputs),
                }
            )
        return out

    def process_view(self, key: str) -> dict[str, Any]:
        with self.rt.db.read() as conn:
            p = self._process(conn, key)
            counts = task_store.node_counts(conn, p.id)
            versions = process_store.list_versions(conn, p.id)
            summary = self._process_summary(conn, p)
        _pid, _v, definition = self.rt.definition(p.version_id)
        node_list = []
        for node in definition.nodes.values():
            item: dict[str, Any] = {
                "id": node.id,
                "title": node.title,
                "kind": node.kind,
                "count": counts.get(node.id, 0),
                "exits": node.exits(),
            }
            if node.kind == "wait":
                item["callback_urls"] = self.rt.callback_urls(p.id, node.id)
            elif node.kind == "start" and definition.incoming_sms is not None:
                # Twilio's incoming-message webhook (SPEC §10): only the plugin form.
                item["callback_urls"] = {"twilio": self.rt.callback_urls(p.id, node.id)["twilio"]}
            node_list.append(item)
        return {
            **summary,
            "description": definition.description,
            "inputs": list(definition.inputs),
            "nodes": node_list,
            "versions": [
                {"version": v["version"], "created_at": iso(v["created_at"]), "source": v["source"]}
                for v in versions
            ],
        }

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

    def create_task(
        self, process_key: str, ref: Any, data: Any, *, source: str = "api"
    ) -> tuple[dict[str, Any], bool]:
        """(task view, created). Same ref and same data as the latest task with that ref
        returns it (an idempotent retry); same ref, other data, unfinished task → 409."""
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
            try:
                with conn.begin_nested():
                    task_store.insert_task(conn, task)
            except IntegrityError as exc:
                raise errors.Conflict("REF_CONFLICT", f"ref {ref!r} is taken") from exc
            task_store.add_events(
                conn, task.id, [Event("created", None, task.node_id, {"by": source})], now
            )
            notify(conn)
            view = self.task_view(conn, task)
        self.rt.wake()
        return view, True

    def get_task(self, task_id: str) -> dict[str, Any]:
        with self.rt.db.read() as conn:
            task = task_store.get_task(conn, task_id)
            if task is None:
                raise errors.NotFound("TASK_NOT_FOUND", f"no task {task_id!r}")
            return self.task_view(conn, task)

    def history(self, task_id: str) -> list[dict[str, Any]]:
        with self.rt.db.read() as conn:
            if task_store.get_task(conn, task_id) is None:
                raise errors.NotFound("TASK_NOT_FOUND", f"no task {task_id!r}")
            events = task_store.history(conn, task_id)
        for e in events:
            e["at"] = iso(e["at"])
        return events

    def list_tasks(
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
        if state not in (None, "active", "waiting", "done"):
            raise errors.Invalid("INVALID_FILTER", "state must be active, waiting or done")
        if outcome not in (None, "success", "escalation"):
            raise errors.Invalid("INVALID_FILTER", "outcome must be success or escalation")
        if not 1 <= limit <= MAX_LIST:
            raise errors.Invalid("INVALID_FILTER", f"limit must be 1-{MAX_LIST}")
        for name, value in (("ref", ref), ("node", node), ("cursor", cursor)):
            storable(value, name)
        before = _decode_cursor(cursor) if cursor else None
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
            items = [self.task_view(conn, t) for t in rows]
        next_cursor = f"{rows[-1].created_at!r}:{rows[-1].id}" if len(rows) == limit else None
        return {"tasks": items, "next_cursor": next_cursor}

    def find_task(
        self, process_key: str | int, *, ref: str | None = None, task_id: str | None = None
    ) -> dict[str, Any]:
        """The task of this process with this id, or with this ref (the unfinished one,
        else the latest)."""
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

    def modify_by_ref(
        self, process_key: str | int, ref: str, data: Any, *, source: str = "api"
    ) -> dict[str, Any]:
        """Corezoid's modify: merge data into the waiting task with this ref and release it."""
        return self.modify(process_key, data, ref=ref, source=source)

    def modify(
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
