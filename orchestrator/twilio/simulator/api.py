"""The Twilio simulator's HTTP resources: Messages, Calls and OutgoingCallerIds under
``/2010-04-01/Accounts/{AccountSid}``, and the ``/_sim/…`` test helpers. The behaviour is
described in ``simulator.py``, which routes these handlers.
"""

from __future__ import annotations

import copy
import secrets
from dataclasses import asdict, fields
from urllib.parse import parse_qsl

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from orchestrator.twilio.errors import API_ERROR_ANSWERS

from .callbacks import CallbackSender
from .config import SimulatorConfig, apply_config
from .incoming import IncomingSender, parse_request
from .paging import date_filter, date_matches, page_payload, parse_paging
from .records import (
    CallRecord,
    MessageRecord,
    call_steps,
    caller_id_json,
    message_steps,
    new_sid,
)
from .rules import (
    SimError,
    basic_auth,
    error_payload,
    first,
    match_rule,
    validate_call,
    validate_message,
)


def _new_stats() -> dict[str, int]:
    keys: tuple[str, ...] = ("messages_created", "calls_created", "callbacks_sent")
    keys += ("callbacks_failed", "incoming_sent", "incoming_failed")
    return dict.fromkeys((*keys, "requests"), 0)


def _error(exc: SimError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(exc.payload(), status_code=exc.status, headers=headers)


def _not_found(path: str) -> JSONResponse:
    return _error(SimError(404, 20404, f"The requested resource {path} was not found"))


async def _form(request: Request) -> dict[str, list[str]]:
    # Parsed by hand: Starlette's request.form() needs python-multipart, not a dependency.
    form: dict[str, list[str]] = {}
    raw = (await request.body()).decode("utf-8", errors="replace")
    for name, value in parse_qsl(raw, keep_blank_values=True):
        form.setdefault(name, []).append(value)
    return form


class Simulator:
    """The in-memory Twilio: records, stats, and the callbacks they send."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self._initial = copy.deepcopy(config)
        self.messages: dict[str, MessageRecord] = {}
        self.calls: dict[str, CallRecord] = {}
        self.stats = _new_stats()
        self.callbacks = CallbackSender(config, self.stats)
        self.incoming = IncomingSender(config, self.stats)

    async def close(self) -> None:
        await self.callbacks.close()
        await self.incoming.close()

    async def reset(self) -> None:
        await self.callbacks.cancel_tasks()
        await self.incoming.cancel_tasks()
        self.incoming.log.clear()
        self.messages.clear()
        self.calls.clear()
        self.stats.update(_new_stats())  # in place: the callback sender counts into it
        self.callbacks.log.clear()
        for f in fields(SimulatorConfig):
            setattr(self.config, f.name, copy.deepcopy(getattr(self._initial, f.name)))

    # -- API -------------------------------------------------------------------------

    def _authorize(self, request: Request) -> Response | None:
        self.stats["requests"] += 1
        cfg = self.config
        user, password = basic_auth(request.headers.get("Authorization", ""))
        # As Twilio: the account's auth token, or an API key (SK…) with its own secret.
        expected = cfg.auth_token if user == cfg.account_sid else cfg.api_keys.get(user)
        password_ok = expected is not None and secrets.compare_digest(
            password.encode(), expected.encode()
        )
        if password_ok and request.path_params["account_sid"] == cfg.account_sid:
            return None
        realm = {"WWW-Authenticate": 'Basic realm="Twilio API"'}
        return _error(SimError(401, 20003, "Authenticate"), realm)

    def _throttle(self) -> Response | None:
        cfg = self.config
        if cfg.rate_limit_429 > 0:
            cfg.rate_limit_429 -= 1
            return _error(SimError(429, 20429, "Too Many Requests"), {"Retry-After": "1"})
        if cfg.fail_503 > 0:
            cfg.fail_503 -= 1
            return _error(SimError(503, 20503, "Service Unavailable"))
        if cfg.fail_next:
            status, code = cfg.fail_next.pop(0)
            if code:
                return _error(SimError(status, code, API_ERROR_ANSWERS.get(code, f"Error {code}")))
            return Response(f"<html>{status}</html>", status_code=status, media_type="text/html")
        return None

    async def create_message(self, request: Request) -> Response:
        denied = self._authorize(request) or self._throttle()
        if denied:
            return denied
        form = await _form(request)
        try:
            validate_message(form)
        except SimError as exc:
            return _error(exc)
        media = [url for url in form.get("MediaUrl", ()) if url]
        message = MessageRecord(
            sid=new_sid("MM" if media else "SM"),
            account_sid=self.config.account_sid,
            to=first(form, "To"),
            from_=first(form, "From") or None,
            body=first(form, "Body"),
            messaging_service_sid=first(form, "MessagingServiceSid") or None,
            media_urls=media,
            status_callback=first(form, "StatusCallback") or None,
            validity_period=first(form, "ValidityPeriod") or None,
        )
        outcome = match_rule(self.config.rules, message.to, "delivered")
        steps = message_steps(outcome)
        self.messages[message.sid] = message
        self.stats["messages_created"] += 1
        self.incoming.after_create(message.to, message.from_, outcome.status)
        return JSONResponse(await self.callbacks.start(message, steps), status_code=201)

    async def fetch_message(self, request: Request) -> Response:
        if denied := self._authorize(request):
            return denied
        message = self.messages.get(request.path_params["sid"])
        return JSONResponse(message.to_json()) if message else _not_found(request.url.path)

    async def list_messages(self, request: Request) -> Response:
        if denied := self._authorize(request):
            return denied
        query = request.query_params
        try:
            dates = date_filter(query)
        except ValueError:
            # 20001 is our guess; Twilio's code for a malformed date was not verified.
            return _error(SimError(400, 20001, "Invalid value for DateSent"))
        to, from_ = query.get("To"), query.get("From")
        items = [
            m.to_json()
            for m in reversed(self.messages.values())  # newest first, like Twilio
            if (not to or m.to == to)
            and (not from_ or m.from_ == from_)
            and date_matches(m.date_sent or m.date_created, dates)
        ]
        page, size = parse_paging(query, 50)
        names = ("To", "From", "DateSent", "DateSent<", "DateSent>")
        filters = {name: query[name] for name in names if query.get(name)}
        payload = page_payload(
            "messages", items, path=request.url.path, filters=filters, page=page, page_size=size
        )
        return JSONResponse(payload)

    async def create_call(self, request: Request) -> Response:
        denied = self._authorize(request) or self._throttle()
        if denied:
            return denied
        form = await _form(request)
        try:
            validate_call(form)
        except SimError as exc:
            return _error(exc)
        # Twilio takes repeated StatusCallbackEvent; some SDKs send one space-separated value.
        events = {e for value in form.get("StatusCallbackEvent", ()) for e in value.split()}
        call = CallRecord(
            sid=new_sid("CA"),
            account_sid=self.config.account_sid,
            to=first(form, "To"),
            from_=first(form, "From"),
            status_callback=first(form, "StatusCallback") or None,
        )
        rule = match_rule(self.config.call_rules, call.to, "completed")
        steps = call_steps(rule, events or {"completed"})
        self.calls[call.sid] = call
        self.stats["calls_created"] += 1
        return JSONResponse(await self.callbacks.start(call, steps), status_code=201)

    async def list_calls(self, request: Request) -> Response:
        if denied := self._authorize(request):
            return denied
        query = request.query_params
        to, from_, status = query.get("To"), query.get("From"), query.get("Status")
        items = [
            c.to_json()
            for c in reversed(self.calls.values())  # newest first, like Twilio
            if (not to or c.to == to)
            and (not from_ or c.from_ == from_)
            and (not status or c.status == status)
        ]
        page, size = parse_paging(query, 50)
        filters = {n: query[n] for n in ("To", "From", "Status") if query.get(n)}
        payload = page_payload(
            "calls", items, path=request.url.path, filters=filters, page=page, page_size=size
        )
        return JSONResponse(payload)

    async def fetch_call(self, request: Request) -> Response:
        if denied := self._authorize(request):
            return denied
        call = self.calls.get(request.path_params["sid"])
        return JSONResponse(call.to_json()) if call else _not_found(request.url.path)

    async def list_caller_ids(self, request: Request) -> Response:
        if denied := self._authorize(request):
            return denied
        cfg, query = self.config, request.query_params
        number = query.get("PhoneNumber")
        items = [
            caller_id_json(cfg.account_sid, n) for n in cfg.caller_ids if n == number or not number
        ]
        page, size = parse_paging(query, cfg.page_size_caller_ids)
        size = min(size, cfg.page_size_caller_ids)
        payload = page_payload(
            "outgoing_caller_ids",
            items,
            path=request.url.path,
            filters={"PhoneNumber": number} if number else {},
            page=page,
            page_size=size,
        )
        return JSONResponse(payload)

    # -- test helpers ------------------------------------------------------------------

    async def sim_stats(self, request: Request) -> Response:
        return JSONResponse(self.stats)

    async def sim_messages(self, request: Request) -> Response:
        # "_created" (Unix seconds, microseconds kept): when the create was accepted;
        # "_validity_period": the ValidityPeriod sent (Twilio's JSON does not show it).
        return JSONResponse(
            [
                {
                    **m.to_json(),
                    "_created": m.date_created.timestamp(),
                    "_validity_period": m.validity_period,
                }
                for m in self.messages.values()
            ]
        )

    async def sim_calls(self, request: Request) -> Response:
        return JSONResponse([c.to_json() for c in self.calls.values()])

    async def sim_callbacks(self, request: Request) -> Response:
        return JSONResponse(list(self.callbacks.log))

    async def sim_config(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                apply_config(self.config, await request.json())
            except ValueError as exc:  # JSONDecodeError is a ValueError too
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(asdict(self.config))

    async def sim_incoming(self, request: Request) -> Response:
        """Someone texts one of our numbers: post the signed webhook now."""
        if request.method == "GET":
            return JSONResponse(list(self.incoming.log))
        try:
            from_, to, body, media, url = parse_request(await request.json())
            answer = await self.incoming.send(from_, to, body, media, url)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(answer)

    async def sim_reset(self, request: Request) -> Response:
        await self.reset()
        return JSONResponse({"reset": True})


async def http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods answer in Twilio's error shape too."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 404:
        return _not_found(request.url.path)
    code, text = (20004, "Method not allowed") if status == 405 else (status, "Error")
    return JSONResponse(error_payload(status, code, text), status_code=status)
