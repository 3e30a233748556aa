"""The ``twilio`` logic: validate input, call Twilio once, and write the result.

Exactly-once: before a create is sent, an effect row is committed for (task, step,
logic). If the step runs again (the worker died after the call, before its commit), the
row is there: a finished call's stored result is reused, and an unfinished one is
resolved by looking the message up in Twilio, never by sending again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import hashlib
import re
import time
from collections.abc import Mapping
from typing import Any

import phonenumbers

from orchestrator.engine.definition import Logic
from orchestrator.engine.interpreter import LogicFailure, StepDeferred, StepResult
from orchestrator.store import effects as effect_store
from orchestrator.store import kv
from orchestrator.store.records import TaskRecord
from orchestrator.twilio.client import Credentials
from orchestrator.twilio.errors import TwilioError

_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_ALPHA_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
_SHORT_CODE = re.compile(r"^\d{5,6}$")
_SOURCE = re.compile(r"\{\{\s*([A-Za-z_][\w.]*)")
_SID = {
    "AccountSid": re.compile(r"^AC[0-9a-fA-F]{32}$"),
    "MessagingServiceSid": re.compile(r"^MG[0-9a-fA-F]{32}$"),
    "Sid": re.compile(r"^(SM|MM)[0-9a-fA-F]{32}$"),
}
MAX_BODY = 1600
TWILIO_SEND_SLOTS = 16
MAX_MEDIA = 10


def _source_name(raw: Any, fallback: str) -> str:
    """The task parameter a logic parameter comes from, to name it in errors."""
    match = _SOURCE.match(raw) if isinstance(raw, str) else None
    return match.group(1) if match else fallback


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value == []


class TwilioActions:
    def __init__(self, runtime: Any) -> None:
        self.rt = runtime
        self._saved_tokens: dict[str, str] = {}
        # As many sends at once as the Twilio client has connections (see client.py).
        self._send_slots = asyncio.Semaphore(TWILIO_SEND_SLOTS)

    async def run(
        self,
        task: TaskRecord,
        process_id: int,
        logic: Logic,
        ctx: dict[str, Any],
        result: StepResult,
    ) -> None:
        from orchestrator.engine.templates import render

        raw = dict(logic.get("params") or {})
        params = render(raw, ctx)
        action = logic.get("action")
        if action == "fetch_message":
            await self._fetch(raw, params, result)
            return
        creds = self._credentials(raw, params)
        form = self._message_form(raw, params, mms=action == "send_mms")
        callback = await self.rt.run_db(self._status_callback, logic.get("status_callback"), ctx)
        if callback:
            form["StatusCallback"] = callback
        message = await self._create_once(task, logic, creds, form, result)
        result.data["sid"] = message.get("sid")
        result.data["status"] = message.get("status")

    # -- input ---------------------------------------------------------------------
    def _credentials(self, raw: Mapping[str, Any], params: Mapping[str, Any]) -> Credentials:
        s = self.rt.settings
        account = params.get("AccountSid")
        if _blank(account):
            account = s.twilio_account_sid
        if _blank(account):
            raise _missing(raw, "AccountSid")
        account = str(account)
        if not _SID["AccountSid"].match(account):
            raise _invalid(raw, "AccountSid", "must be AC followed by 32 hex digits")
        key_sid, key_secret = params.get("ApiKeySid"), params.get("ApiKeySecret")
        if not _blank(key_sid) and not _blank(key_secret):
            return Credentials(account, str(key_sid), str(key_secret))
        token = params.get("AuthToken")
        if _blank(token) and account == s.twilio_account_sid:
            token = s.twilio_auth_token
        if _blank(token):
            raise _missing(raw, "AuthToken")
        return Credentials(account, account, str(token))

    def _message_form(
        self, raw: Mapping[str, Any], params: Mapping[str, Any], *, mms: bool
    ) -> dict[str, Any]:
        form: dict[str, Any] = {}
        to = params.get("To")
        if _blank(to):
            raise _missing(raw, "To")
        if not _is_phone(str(to)):
            raise _invalid(raw, "To", "must be an E.164 number with '+' and country code")
        form["To"] = str(to)
        sender, service = params.get("From"), params.get("MessagingServiceSid")
        if _blank(sender) and _blank(service):
            raise _missing(raw, "From")
        if not _blank(sender):
            text = str(sender)
            if not (_is_phone(text) or _ALPHA_SENDER.match(text) or _SHORT_CODE.match(text)):
                raise _invalid(raw, "From", "must be an E.164 number, short code or sender ID")
            form["From"] = text
        if not _blank(service):
            if not _SID["MessagingServiceSid"].match(str(service)):
                raise _invalid(raw, "MessagingServiceSid", "must be MG followed by 32 hex digits")
            form["MessagingServiceSid"] = str(service)
        body = params.get("Body")
        media = params.get("MediaUrl")
        media_list = [] if _blank(media) else (media if isinstance(media, list) else [media])
        if len(media_list) > MAX_MEDIA:
            raise _invalid(raw, "MediaUrl", f"at most {MAX_MEDIA} media URLs")
        for url in media_list:
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise _invalid(raw, "MediaUrl", "each media URL must be http(s)")
        if mms and not media_list:
            raise _missing(raw, "MediaUrl")
        if _blank(body) and not media_list:
            raise _missing(raw, "Body")
        if not _blank(body):
            text = str(body)
            if len(text) > MAX_BODY:
                raise _invalid(raw, "Body", f"must be 1-{MAX_BODY} characters, got {len(text)}")
            form["Body"] = text
        if media_list:
            form["MediaUrl"] = [str(u) for u in media_list]
        validity = params.get("ValidityPeriod")
        if not _blank(validity):
            try:
                seconds = int(str(validity))
            except ValueError:
                seconds = 0
            if not 1 <= seconds <= 36000:
                raise _invalid(raw, "ValidityPeriod", "must be 1-36000 seconds")
            form["ValidityPeriod"] = str(seconds)
        return form

    def _status_callback(self, spec: Any, ctx: dict[str, Any]) -> str | None:
        from orchestrator.engine.templates import render

        if spec is None:
            return None
        if isinstance(spec, str):
            return str(render(spec, ctx))
        with self.rt.db.read() as conn:
            proc = self.rt.process(conn, spec["process"])
        urls: dict[str, str] = self.rt.callback_urls(proc.id, spec["node"])
        return urls[spec.get("form", "twilio")].replace("{{root.task_id}}", ctx["root"]["task_id"])

    # -- the call --------------------------------------------------------------------
    async def _create_once(
        self,
        task: TaskRecord,
        logic: Logic,
        creds: Credentials,
        form: dict[str, Any],
        result: StepResult,
    ) -> dict[str, Any]:
        summary = {k: v for k, v in form.items() if k != "Body"}
        summary["account_sid"] = creds.account_sid
        summary["body_sha256"] = hashlib.sha256(str(form.get("Body", "")).encode()).hexdigest()
        # The send slot is taken before the attempt is recorded: a worker killed while
        # queueing for Twilio leaves no "started" record, so nothing is in doubt.
        async with self._send_slots:
            return await self._record_and_send(task, logic, creds, form, summary, result)

    async def _record_and_send(
        self,
        task: TaskRecord,
        logic: Logic,
        creds: Credentials,
        form: dict[str, Any],
        summary: dict[str, Any],
        result: StepResult,
    ) -> dict[str, Any]:
        prior = await self.rt.run_db(self._begin, task, logic.index, summary, creds)
        if prior is not None and prior["status"] == "done":
            outcome = prior["result"] or {}
        elif prior is not None:
            # Begun by a worker that lost its lease: it may still be waiting for Twilio's
            # answer. Only once that answer can no longer come is the message looked up.
            settled = prior["created_at"] + self._answer_deadline()
            if time.time() < settled:
                raise StepDeferred(settled, "an earlier attempt of this send may still finish")
            outcome = await self._resolve_unknown(creds, form, prior["created_at"])
        else:
            try:
                outcome = {"message": await self.rt.twilio.create_message(creds, form)}
            except TwilioError as exc:
                if exc.outcome_unknown:
                    outcome = await self._resolve_unknown(creds, form, time.time() - 1)
                else:
                    outcome = {"error": exc.as_task_data()}
        result.effects_done.append((logic.index, outcome))
        if "error" in outcome:
            raise LogicFailure(dict(outcome["error"]))
        return dict(outcome["message"])

    def _answer_deadline(self) -> float:
        """How long after an attempt began its answer could still arrive (all retries)."""
        return float(self.rt.settings.twilio_timeout + 5.0) * 4 + 10.0

    def _begin(
        self, task: TaskRecord, index: int, summary: dict[str, Any], creds: Credentials
    ) -> dict[str, Any] | None:
        with self.rt.db.write() as conn:
            prior = effect_store.begin(
                conn, task.id, task.step, index, "twilio.create_message", summary, time.time()
            )
            self._remember_token(conn, creds)
        return prior

    def _remember_token(self, conn: Any, creds: Credentials) -> None:
        """Keep the account's auth token (encrypted) to verify its callbacks later."""
        if creds.username != creds.account_sid:
            return  # an API key secret cannot verify signatures
        if creds.account_sid == self.rt.settings.twilio_account_sid:
            return
        digest = hashlib.sha256(creds.password.encode()).hexdigest()
        if self._saved_tokens.get(creds.account_sid) == digest:
            return
        kv.save_account_token(
            conn, creds.account_sid, self.rt.vault.encrypt(creds.password), time.time()
        )
        self._saved_tokens[creds.account_sid] = digest

    async def _resolve_unknown(
        self, creds: Credentials, form: dict[str, Any], since: float
    ) -> dict[str, Any]:
        """Find the message a lost answer would have described; adopt it if exactly one
        matches, else give up with TWILIO_OUTCOME_UNKNOWN (never send again)."""
        day = dt.datetime.fromtimestamp(since, dt.UTC).strftime("%Y-%m-%d")
        try:
            found = await self.rt.twilio.list_messages(
                # On or after: a send that began before midnight UTC may be dated the next day.
                creds,
                to=form["To"],
                from_=form.get("From"),
                sent_on_or_after=day,
            )
        except TwilioError:
            found = None
        if found is not None:
            matches = [m for m in found if _same_message(m, form, since)]
            if len(matches) == 1:
                return {"message": matches[0], "adopted": True}
        return {
            "error": {
                "error": "TWILIO_OUTCOME_UNKNOWN",
                "code": "TWILIO_OUTCOME_UNKNOWN",
                "message": "Twilio did not answer after the request was sent and no matching "
                "message was found; it was not re-sent",
            }
        }

    async def _fetch(
        self, raw: Mapping[str, Any], params: Mapping[str, Any], result: StepResult
    ) -> None:
        creds = self._credentials(raw, params)
        sid = params.get("Sid")
        if _blank(sid):
            raise _missing(raw, "Sid")
        try:
            message = await self.rt.twilio.fetch_message(creds, str(sid))
        except TwilioError as exc:
            raise LogicFailure(exc.as_task_data()) from exc
        result.data["status"] = message.get("status")
        if message.get("error_code"):
            result.data["ErrorCode"] = message["error_code"]


def _same_message(message: Mapping[str, Any], form: Mapping[str, Any], since: float) -> bool:
    if message.get("to") != form["To"]:
        return False
    if form.get("From") and message.get("from") != form["From"]:
        return False
    if "Body" in form and message.get("body") != form["Body"]:
        return False
    created = message.get("date_created")
    if isinstance(created, str):
        try:
            when = email.utils.parsedate_to_datetime(created).timestamp()
        except (TypeError, ValueError):
            return True
        return when >= since - 60
    return True


def _is_phone(value: str) -> bool:
    if not _E164.match(value):
        return False
    try:
        return phonenumbers.is_possible_number(phonenumbers.parse(value, None))
    except phonenumbers.NumberParseException:
        return False


def _missing(raw: Mapping[str, Any], name: str) -> LogicFailure:
    field = _source_name(raw.get(name), name)
    return LogicFailure(
        {
            "error": "MISSING_INPUT",
            "code": "MISSING_INPUT",
            "field": field,
            "message": f"{field} is required",
        }
    )


def _invalid(raw: Mapping[str, Any], name: str, why: str) -> LogicFailure:
    field = _source_name(raw.get(name), name)
    return LogicFailure(
        {
            "error": "INVALID_INPUT",
            "code": "INVALID_INPUT",
            "field": field,
            "message": f"{field} {why}",
        }
    )
