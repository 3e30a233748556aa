"""Twilio-compatible fake server: tests, the demo and ``orchestrator simulate-twilio``.

Serves, in memory, the slice of Twilio's 2010 REST API the orchestrator uses (paths under
``/2010-04-01/Accounts/{AccountSid}``, HTTP Basic auth ``AccountSid:AuthToken`` or
``SK…:AuthToken``): ``POST/GET Messages.json``, ``GET Messages/{Sid}.json``,
``POST/GET Calls.json``, ``GET Calls/{Sid}.json``, ``GET OutgoingCallerIds.json``.
Answers and errors have Twilio's JSON shapes (``{"code","message","more_info","status"}``), so the
official ``twilio`` client works against it (``client.api.base_url = "http://host:port"``).
Validation, error codes and the test-credential magic numbers live in
``simulator_rules.py``.

Message outcomes (``SimulatorConfig.rules``, matched on the end of ``To``; the longest
matching suffix wins, on a tie the later rule, so an appended rule overrides):

==========  ===========  =========  ==============================================
To ends in  outcome      ErrorCode  status callbacks (``MessageStatus``), in order
==========  ===========  =========  ==============================================
(other)     delivered               sent, delivered
3003        undelivered  30003      sent, undelivered
3005        undelivered  30005      sent, undelivered
3008        failed       30008      failed
0000        lost                    none; the message still moves to ``sent``
==========  ===========  =========  ==============================================

A rule may also say ``sent`` (a carrier without DLRs: one ``sent`` callback, then nothing).

Call outcomes (``call_rules``): ``completed`` by default (initiated, ringing, in-progress,
completed), ``4000`` no-answer and ``4001`` busy (initiated, ringing, then the outcome).
Only the ``StatusCallbackEvent`` values asked for are posted (default ``completed``;
``answered`` = in-progress, ``completed`` = any terminal status).

The stored status advances on the same clock whether or not a callback is posted (no
``StatusCallback``, ``lose_callbacks``, a ``lost`` rule), so fetch/list show it and
reconciliation by polling can be tested. Statuses never move backwards.

Callbacks: form-encoded POSTs signed with ``X-Twilio-Signature`` (URL without its
``#fragment``, auth token), one ``I-Twilio-Idempotency-Token`` per delivery (reused by its
retries and by the ``duplicate_callbacks`` copy). A failed POST (no connection, non-2xx) is
retried after ``callback_retry_delay`` (``#rc=N`` on the URL asks for N retries, 0–5, as
Twilio's connection overrides do) and then dropped, counted in ``callbacks_failed``.

Test helpers (no auth): ``GET /_sim/stats``, ``GET /_sim/messages``, ``GET /_sim/calls``,
``GET /_sim/callbacks`` (last 1000 delivery attempts), ``GET|POST /_sim/config`` (JSON
object of fields to change), ``POST /_sim/reset`` (forget everything, cancel pending
callbacks, restore the config given to :func:`create_app`).

Deliberate differences from Twilio: any ``From`` is accepted (except the magic ones); the
first status is ``queued`` even with a ``MessagingServiceSid`` (Twilio: ``accepted`` and a
``queued`` callback), whose sender is ``+15005550006``; magic numbers work with any
credentials, and callbacks are sent (Twilio's test credentials send none); callbacks are
retried on non-2xx too (Twilio's default retries only failed connects); no prices.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import secrets
import uuid
from collections import deque
from collections.abc import AsyncIterator, Coroutine
from dataclasses import asdict, dataclass, field, fields
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .signature import SIGNATURE_HEADER, compute_signature
from .simulator_rules import (
    API_VERSION,
    DEFAULT_CALL_RULES,
    DEFAULT_RULES,
    CallRecord,
    MessageRecord,
    OutcomeRule,
    Record,
    SimError,
    Step,
    apply_config,
    basic_auth,
    call_steps,
    caller_id_json,
    date_filter,
    date_matches,
    error_payload,
    first,
    match_rule,
    message_steps,
    new_sid,
    page_payload,
    parse_paging,
    retry_count,
    validate_call,
    validate_message,
)

__all__ = [
    "DEFAULT_CALL_RULES",
    "DEFAULT_RULES",
    "IDEMPOTENCY_HEADER",
    "OutcomeRule",
    "SimulatorConfig",
    "create_app",
    "serve_simulator",
]

IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"
# Texts for ``fail_next`` codes outside the magic-number tables.
FAIL_TEXT = {
    20003: "Authenticate",
    20005: "Account not active",
    20008: "Resource not accessible with Test Account Credentials",
    21608: "The number is unverified. Trial accounts cannot send messages to unverified numbers",
    20404: "The requested resource was not found",
    20500: "Internal Server Error",
}


def _default_caller_ids() -> list[str]:
    return ["+15005550006", "+14155550100", "+14155550101", "+14155550102"]


@dataclass
class SimulatorConfig:
    """Live settings; the app mutates this very object (counters, ``/_sim/config``)."""

    account_sid: str = "AC" + "0" * 32
    auth_token: str = "simulator-auth-token"
    callback_delay: float = 0.02  # before the first callback and between callbacks
    duplicate_callbacks: bool = False  # post each callback twice, same idempotency token
    reorder_callbacks: bool = False  # post the terminal callback first
    early_callbacks: bool = False  # post the first callback before answering the create
    rate_limit_429: int = 0  # the next N creates answer 429 / 20429, Retry-After: 1
    fail_503: int = 0  # the next N creates answer 503
    # The next creates answer these [HTTP status, Twilio code] (code 0: a body without
    # one, as a proxy or load balancer would send), one each, in order.
    fail_next: list[list[int]] = field(default_factory=list)
    response_delay: float = 0.0  # sleep before answering creates (created anyway)
    lose_callbacks: bool = False  # never post status callbacks
    page_size_caller_ids: int = 50  # the default and largest OutgoingCallerIds page
    caller_ids: list[str] = field(default_factory=_default_caller_ids)
    rules: list[OutcomeRule] = field(default_factory=lambda: list(DEFAULT_RULES))
    call_rules: list[OutcomeRule] = field(default_factory=lambda: list(DEFAULT_CALL_RULES))
    callback_retry_delay: float = 0.2


def _new_stats() -> dict[str, int]:
    keys = ("messages_created", "calls_created", "callbacks_sent", "callbacks_failed")
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


class _Simulator:
    """The in-memory Twilio: records, stats, pending callback tasks, one HTTP client."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self._initial = copy.deepcopy(config)
        self.messages: dict[str, MessageRecord] = {}
        self.calls: dict[str, CallRecord] = {}
        self.stats = _new_stats()
        self.callback_log: deque[dict[str, Any]] = deque(maxlen=1000)
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None

    def _client(self) -> httpx.AsyncClient:
        # Created lazily so it belongs to the server's event loop; closed at shutdown.
        if self._http is None:
            timeout = httpx.Timeout(15.0, connect=5.0)  # Twilio's default rt/ct
            self._http = httpx.AsyncClient(
                timeout=timeout,
                headers={"User-Agent": "TwilioProxy/1.1"},
                limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
            )
        return self._http

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)  # the loop keeps only a weak reference to tasks
        task.add_done_callback(self._tasks.discard)

    async def _cancel_tasks(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        await self._cancel_tasks()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def reset(self) -> None:
        await self._cancel_tasks()
        self.messages.clear()
        self.calls.clear()
        self.stats = _new_stats()
        self.callback_log.clear()
        for f in fields(SimulatorConfig):
            setattr(self.config, f.name, copy.deepcopy(getattr(self._initial, f.name)))

    # -- callbacks -------------------------------------------------------------------

    async def _run(self, record: Record, steps: list[Step]) -> None:
        for step in steps:
            await asyncio.sleep(self.config.callback_delay)
            await self._emit(record, step)

    async def _emit(self, record: Record, step: Step) -> None:
        record.advance(step)
        url = record.status_callback
        if not step.post or not url or self.config.lose_callbacks:
            return
        params = record.callback_params(step)
        token = uuid.uuid4().hex  # one per delivery: its retries and duplicate reuse it
        for _ in range(2 if self.config.duplicate_callbacks else 1):
            await self._deliver(url, params, token)

    async def _deliver(self, url: str, params: dict[str, str], token: str) -> None:
        parts = urlsplit(url)
        target = urlunsplit(parts._replace(fragment=""))  # fragments are never signed
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            SIGNATURE_HEADER: compute_signature(target, params, self.config.auth_token),
            IDEMPOTENCY_HEADER: token,
            "X-Home-Region": "us1",
        }
        body = urlencode(params)
        for attempt in range(retry_count(parts.fragment) + 1):
            if attempt:
                await asyncio.sleep(self.config.callback_retry_delay)
            result: int | str
            try:
                response = await self._client().post(target, content=body, headers=headers)
                result = response.status_code
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                result = type(exc).__name__
            self.callback_log.append(
                {
                    "url": target,
                    "params": params,
                    "token": token,
                    "attempt": attempt,
                    "result": result,
                }
            )
            if isinstance(result, int) and 200 <= result < 300:
                self.stats["callbacks_sent"] += 1
                return
        self.stats["callbacks_failed"] += 1

    async def _start(self, record: Record, steps: list[Step]) -> Response:
        """Schedule the record's lifecycle and answer the create (201)."""
        cfg = self.config
        answer = record.to_json()  # the initial status, even if a callback beats it
        if cfg.reorder_callbacks and len(steps) > 1:
            steps = [steps[-1], *steps[:-1]]
        if cfg.early_callbacks:
            while steps:  # up to and including the first step that posts a callback
                step = steps.pop(0)
                await self._emit(record, step)
                if step.post:
                    break
        self._spawn(self._run(record, steps))
        if cfg.response_delay > 0:
            await asyncio.sleep(cfg.response_delay)  # the record exists meanwhile
        return JSONResponse(answer, status_code=201)

    # -- API -------------------------------------------------------------------------

    def _authorize(self, request: Request) -> Response | None:
        self.stats["requests"] += 1
        cfg = self.config
        user, password = basic_auth(request.headers.get("Authorization", ""))
        user_ok = user == cfg.account_sid or (user.startswith("SK") and len(user) > 2)
        password_ok = secrets.compare_digest(password.encode(), cfg.auth_token.encode())
        if user_ok and password_ok and request.path_params["account_sid"] == cfg.account_sid:
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
                return _error(SimError(status, code, FAIL_TEXT.get(code, f"Error {code}")))
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
        steps = message_steps(match_rule(self.config.rules, message.to, "delivered"))
        self.messages[message.sid] = message
        self.stats["messages_created"] += 1
        return await self._start(message, steps)

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
        return await self._start(call, steps)

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
        return JSONResponse(list(self.callback_log))

    async def sim_config(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                apply_config(self.config, await request.json())
            except ValueError as exc:  # JSONDecodeError is a ValueError too
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(asdict(self.config))

    async def sim_reset(self, request: Request) -> Response:
        await self.reset()
        return JSONResponse({"reset": True})


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods answer in Twilio's error shape too."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 404:
        return _not_found(request.url.path)
    code, text = (20004, "Method not allowed") if status == 405 else (status, "Error")
    return JSONResponse(error_payload(status, code, text), status_code=status)


def create_app(config: SimulatorConfig) -> Starlette:
    """The simulator as an ASGI app; its state is ``app.state.sim``."""
    sim = _Simulator(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await sim.close()

    base = f"/{API_VERSION}/Accounts/{{account_sid}}"
    routes = [
        Route(f"{base}/Messages.json", sim.create_message, methods=["POST"]),
        Route(f"{base}/Messages.json", sim.list_messages, methods=["GET"]),
        Route(f"{base}/Messages/{{sid}}.json", sim.fetch_message, methods=["GET"]),
        Route(f"{base}/Calls.json", sim.create_call, methods=["POST"]),
        Route(f"{base}/Calls.json", sim.list_calls, methods=["GET"]),
        Route(f"{base}/Calls/{{sid}}.json", sim.fetch_call, methods=["GET"]),
        Route(f"{base}/OutgoingCallerIds.json", sim.list_caller_ids, methods=["GET"]),
        Route("/_sim/stats", sim.sim_stats, methods=["GET"]),
        Route("/_sim/messages", sim.sim_messages, methods=["GET"]),
        Route("/_sim/calls", sim.sim_calls, methods=["GET"]),
        Route("/_sim/callbacks", sim.sim_callbacks, methods=["GET"]),
        Route("/_sim/config", sim.sim_config, methods=["GET", "POST"]),
        Route("/_sim/reset", sim.sim_reset, methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: _http_error, 405: _http_error},
    )
    app.state.sim = sim
    return app


async def serve_simulator(
    config: SimulatorConfig, host: str = "127.0.0.1", port: int = 8010
) -> None:
    """Run the simulator under uvicorn until cancelled (or until SIGINT/SIGTERM)."""
    server = uvicorn.Server(
        uvicorn.Config(create_app(config), host=host, port=port, log_level="warning")
    )
    task = asyncio.ensure_future(server.serve())
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        # Let uvicorn close its sockets and run the lifespan shutdown before leaving.
        server.should_exit = True
        await task
        raise
