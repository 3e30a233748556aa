"""Callbacks posted to a wait node's URL: checked by their form's plugin (signature,
addressee, dedupe key), stored durably, and the engine woken. An incoming SMS posted to
an ``incoming_sms`` process's start node is stored for the engine to apply. Nothing is
stored when the URL, signature or body is refused (a domain error says why). The entry
points are coroutines running their database part where the runtime runs database work;
each callback received or refused is counted in the runtime's metrics."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection

from orchestrator import secretdata
from orchestrator.engine import incoming_sms
from orchestrator.engine.definition import ProcessDefinition
from orchestrator.engine.plugins import CallbackForm, CallbackRefused
from orchestrator.engine.runtime import NotFound, Runtime
from orchestrator.services import errors
from orchestrator.store import callbacks as inbox
from orchestrator.store import tasks as task_store
from orchestrator.store.notify import notify
from orchestrator.store.records import ProcessRecord
from orchestrator.textcheck import problem


class CallbackInbox:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def cached_callback_url(self, conv_id: str, given: str) -> bool:
        """True when the URL is known without asking the database (the usual case)."""
        if not (conv_id.isascii() and conv_id.isdigit() and len(conv_id) < 12):
            return False
        return self.rt.cached_wait_node(int(conv_id), given) is not None

    async def check_callback_url(self, conv_id: str, given: str) -> None:
        """NOT_FOUND unless the URL names a wait node (checked before a body is read)."""
        if not self.cached_callback_url(conv_id, given):
            await self.rt.run_db(self._check_callback_url, conv_id, given)

    def _check_callback_url(self, conv_id: str, given: str) -> None:
        with self.rt.db.read() as conn:
            self._wait_node_for_hash(conn, conv_id, given)

    def _wait_node_for_hash(
        self, conn: Connection, conv_id: str, given: str
    ) -> tuple[ProcessRecord, str]:
        if not (conv_id.isascii() and conv_id.isdigit()):
            raise errors.NotFound("NOT_FOUND", "unknown callback URL")
        try:
            proc = self.rt.process(conn, int(conv_id))
        except NotFound as exc:
            raise errors.NotFound("NOT_FOUND", "unknown callback URL") from exc
        node_id = self.rt.wait_node_for_hash(conn, proc.id, given)
        if node_id is None:
            raise errors.NotFound("NOT_FOUND", "unknown callback URL")
        return proc, node_id

    def signed_url(self, path: str, query: str) -> str:
        """The URL a provider signed: the configured public base plus path and query."""
        base = self.rt.settings.public_url.rstrip("/")
        return f"{base}{path}" + (f"?{query}" if query else "")

    def count_refusal(self, form: str, code: str) -> str:
        """Count a refused callback; the reason it is counted under."""
        return self.rt.metrics.callback_rejected(form, code)

    async def receive_callback(
        self,
        form: str,
        conv_id: str,
        node_hash: str,
        payload: dict[str, Any],
        *,
        task_id: str | None = None,
        url: str | None = None,
        signature: str | None = None,
        form_pairs: list[tuple[str, str]] | None = None,
        idem_token: str | None = None,
        source_ip: str | None = None,
    ) -> dict[str, Any]:
        """Store a callback durably and wake the engine. Returns {"status": accepted|
        duplicate}. Nothing is stored when the URL, signature or body is refused."""
        # Grouped: it may start over, so it works on a copy of the payload.
        result = await self.rt.run_db_grouped(
            self._receive_callback,
            form,
            conv_id,
            node_hash,
            payload,
            task_id,
            url,
            signature,
            form_pairs,
            idem_token,
            source_ip,
        )
        counted = "duplicate" if result.get("status") == "duplicate" else "received"
        self.rt.metrics.callbacks(form, counted).inc()
        return result

    def _receive_callback(
        self,
        form: str,
        conv_id: str,
        node_hash: str,
        payload: dict[str, Any],
        task_id: str | None,
        url: str | None,
        signature: str | None,
        form_pairs: list[tuple[str, str]] | None,
        idem_token: str | None,
        source_ip: str | None,
    ) -> dict[str, Any]:
        now = time.time()
        payload = dict(payload)  # the verification and the form may add fields
        with self.rt.db.write() as conn:
            proc, node_id = self._wait_node_for_hash(conn, conv_id, node_hash)
            _pid, _v, definition = self.rt.definition(proc.version_id, conn)
            # A start node's URL takes incoming SMS, in an ``incoming_sms`` process only.
            is_start = node_id in definition.nodes and definition.node(node_id).kind == "start"
            takes_messages = is_start and definition.incoming_sms is not None
            if is_start and not takes_messages:
                raise errors.NotFound("NOT_FOUND", "unknown callback URL")
            kind = self.rt.callback_form(form)
            try:
                confirmed = kind.verify(
                    conn, payload, url=url, signature=signature, pairs=form_pairs or []
                )
            except CallbackRefused as exc:
                raise refused(exc) from None
            if takes_messages:
                # An incoming message is checked once, on receipt (nobody sent it).
                for key in kind.hidden_fields():
                    payload.pop(key, None)
                answer = self._store_message(
                    conn, proc.id, node_id, definition, payload, form, source_ip, now
                )
            else:
                answer = None
                ref, task_id, dedupe = self._addressee(
                    conn, proc.id, kind, payload, task_id, confirmed
                )
                cb_id = inbox.insert_callback(
                    conn,
                    process_id=proc.id,
                    node_id=node_id,
                    form=form,
                    payload=secretdata.seal(self.rt.vault, payload),
                    received_at=now,
                    ref=ref,
                    task_id=task_id,
                    dedupe_key=dedupe,
                    idem_token=f"{proc.id}:{idem_token}" if idem_token else None,
                    source_ip=source_ip,
                )
                if cb_id is not None:
                    notify(conn)
        if answer is not None:
            self.rt.wake()
            return answer
        if cb_id is None:
            return {"status": "duplicate"}
        self.rt.wake()
        return {"status": "accepted", "callback_id": cb_id}

    def _addressee(
        self,
        conn: Connection,
        process_id: int,
        form: CallbackForm,
        payload: dict[str, Any],
        task_id: str | None,
        confirmed: bool,
    ) -> tuple[str | None, str | None, str | None]:
        """(ref, task id, dedupe key) of a callback for a wait node; refuses a callback
        that names no task. ``confirmed``: its signature was checked against the message's
        recorded sender."""
        ref = None
        dedupe = None
        try:
            addressed = form.addressee(payload)
        except CallbackRefused as exc:
            raise refused(exc) from None
        if addressed is not None:
            ref, dedupe = addressed.ref, addressed.dedupe_key
            storable(ref, form.ref_name)
            form.accepted(conn, ref, payload, confirmed)
        elif task_id is None:
            task_id = _str_or_none(payload.get("task_id"))
            ref = _str_or_none(payload.get("ref"))
            if task_id is None and ref is None:
                raise errors.Invalid(
                    "MISSING_TASK_ID",
                    "the body needs a task_id or ref field naming the task",
                )
        storable(None if ref is None else str(ref), "the callback's ref or sid")
        storable(task_id, "task_id")
        if task_id is not None:
            task = task_store.get_task(conn, task_id)
            if task is None or task.process_id != process_id:
                raise errors.NotFound("TASK_NOT_FOUND", f"no task {task_id!r} in this process")
        return (str(ref) if ref is not None else None), task_id, dedupe

    def _store_message(
        self,
        conn: Connection,
        process_id: int,
        node_id: str,
        definition: ProcessDefinition,
        payload: dict[str, Any],
        form: str,
        source_ip: str | None,
        now: float,
    ) -> dict[str, Any]:
        """An incoming SMS posted to an ``incoming_sms`` process's start node URL."""
        if form != "twilio":
            raise errors.NotFound("NOT_FOUND", "unknown callback URL")
        storable(payload.get("MessageSid"), "MessageSid")
        try:
            cb_id, answer = incoming_sms.store_incoming(
                conn,
                self.rt,
                process_id,
                node_id,
                definition,
                payload,
                source_ip=source_ip,
                now=now,
            )
        except incoming_sms.IncomingRefused as exc:
            raise errors.Invalid("MISSING_FIELD", str(exc)) from exc
        if cb_id is not None:
            notify(conn)
        status = "duplicate" if cb_id is None else "accepted"
        return {"status": status, "callback_id": cb_id, "twiml": answer}


def refused(exc: CallbackRefused) -> errors.ServiceError:
    """A callback refused on receipt: a bad signature is Forbidden, unstorable text is bad
    input (BadInput), the rest Invalid."""
    kinds = {"INVALID_SIGNATURE": errors.Forbidden, "INVALID_INPUT": errors.BadInput}
    return kinds.get(exc.code, errors.Invalid)(exc.code, exc.message)


def storable(value: Any, name: str) -> None:
    """BadInput INVALID_INPUT for text no database can store (see orchestrator/textcheck)."""
    if isinstance(value, str):
        found = problem(value)
        if found:
            raise errors.BadInput("INVALID_INPUT", f"{name} holds {found}")


def _str_or_none(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)
