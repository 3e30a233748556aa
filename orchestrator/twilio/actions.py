"""The ``twilio`` logic: validate input, call Twilio once, and write the result.

Actions: ``send_sms``, ``send_mms``, ``make_call``, ``fetch_message``, ``fetch_call``,
``list_caller_ids`` and ``send_to_many`` (in ``bulk``). Input checks live in
``inputs``; creates are made exactly once (``exactly_once``), each sender at its pace
(``pacing``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.engine.definition import Logic
from orchestrator.engine.runtime import Runtime
from orchestrator.engine.steps import LogicFailure, NewTask, StepResult
from orchestrator.engine.templates import TemplateError, render
from orchestrator.store.records import TaskRecord
from orchestrator.twilio import inputs as check
from orchestrator.twilio import reads, results
from orchestrator.twilio.bulk import CallbackTarget, send_to_many
from orchestrator.twilio.context import twilio_of
from orchestrator.twilio.credentials import Credentials
from orchestrator.twilio.exactly_once import OnceSender
from orchestrator.twilio.template_files import with_template_body


class TwilioActions:
    """The ``twilio`` step handler: dispatches each action, and the helpers it shares
    with ``bulk.send_to_many`` (status callback URLs, follow-up tasks, creates)."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.twilio = twilio_of(runtime)
        self.sender = OnceSender(runtime, self.twilio)
        self.pacer = self.sender.pacer

    async def run(
        self,
        task: TaskRecord,
        process_id: int,
        logic: Logic,
        ctx: dict[str, Any],
        result: StepResult,
    ) -> str | None:
        """Run the logic; its result and its failures also carry seed 002's names."""
        raw = dict(logic.get("params") or {})
        params: dict[str, Any] = {}
        try:
            params = render(raw, ctx)
            await self._run(task, process_id, logic, ctx, result, raw, params)
        except TemplateError as exc:
            raise LogicFailure(results.failure(exc.as_task_data(), raw, params)) from exc
        except LogicFailure as exc:
            exc.fields = results.failure(exc.fields, raw, params)
            raise
        results.success(str(logic.get("action")), result.data)
        return None

    async def _run(
        self,
        task: TaskRecord,
        process_id: int,
        logic: Logic,
        ctx: dict[str, Any],
        result: StepResult,
        raw: dict[str, Any],
        params: dict[str, Any],
    ) -> None:
        action = logic.get("action")
        check.types(raw, params, many=action == "send_to_many")
        params = with_template_body(raw, params, ctx, bulk=action == "send_to_many")
        creds = check.credentials(self.rt.settings, raw, params)
        creds = check.with_base_url(creds, logic.get("base_url"))
        if action == "fetch_message":
            await reads.fetch_message(self.twilio.client, creds, raw, params, result)
            return
        if action == "fetch_call":
            await reads.fetch_call(self.twilio.client, creds, raw, params, result)
            return
        if action == "list_caller_ids":
            await reads.caller_ids(self.twilio.client, creds, result)
            return
        if action == "send_to_many":
            await send_to_many(self, task, logic, creds, raw, params, result)
            return
        if action == "make_call":
            form = check.call_form(raw, params)
        else:
            form = check.message_form(raw, params, mms=action == "send_mms")
        callback, target = await self.rt.run_db(
            self.status_callback, logic.get("status_callback"), ctx
        )
        if callback:
            form["StatusCallback"] = callback
        kind = "call" if action == "make_call" else "message"
        found = await self.create_once(
            task, logic.index, creds, form, result, kind=kind, target=target
        )
        result.data["sid"] = found.get("sid")
        result.data["status"] = found.get("status")

    # -- helpers shared with bulk.py -------------------------------------------------
    def status_callback(self, spec: Any, ctx: dict[str, Any]) -> tuple[str | None, CallbackTarget]:
        """The StatusCallback URL, and (process id, wait node) when it is a plugin URL
        of one of our wait nodes (so the reconciliation sweep can stand in for it)."""
        if spec is None:
            return None, None
        if isinstance(spec, str):
            return str(render(spec, ctx)), None
        proc = self.rt.cached_process(spec["process"])
        if proc is None:
            with self.rt.db.read() as conn:
                proc = self.rt.process(conn, spec["process"])
        form = spec.get("form", "twilio")
        urls: dict[str, str] = self.rt.callback_urls(proc.id, spec["node"])
        url = urls[form].replace("{{root.task_id}}", ctx["root"]["task_id"])
        return url, ((proc.id, str(spec["node"])) if form == "twilio" else None)

    def follower(self, spec: Any) -> tuple[int, int, str] | None:
        """(process id, version id, start node) of the process that follows each sent
        message (``follow: {process: …}``), or None."""
        if not spec:
            return None
        name = spec.get("process") if isinstance(spec, Mapping) else spec
        with self.rt.db.read() as conn:
            proc = self.rt.process(conn, str(name))
        _pid, _v, definition = self.rt.definition(proc.version_id)
        return proc.id, proc.version_id, definition.start

    @staticmethod
    def follow_task(
        target: tuple[int, int, str], task: TaskRecord, data: dict[str, Any]
    ) -> NewTask:
        pid, version, start = target
        return NewTask(pid, version, start, str(data["sid"]), data, task.id)

    async def create_once(
        self,
        task: TaskRecord,
        index: int,
        creds: Credentials,
        form: dict[str, Any],
        result: StepResult,
        *,
        kind: str = "message",
        slot: float | None = None,
        raise_error: bool = True,
        target: CallbackTarget = None,
    ) -> dict[str, Any]:
        """See ``OnceSender.create_once`` (``bulk.send_to_many`` sends through here)."""
        return await self.sender.create_once(
            task,
            index,
            creds,
            form,
            result,
            kind=kind,
            slot=slot,
            raise_error=raise_error,
            target=target,
        )
