"""Twilio-compatible fake server: tests, the demo and ``orchestrator simulate-twilio``.

Serves, in memory, the slice of Twilio's 2010 REST API the orchestrator uses (paths under
``/2010-04-01/Accounts/{AccountSid}``, HTTP Basic auth ``AccountSid:AuthToken`` or
``SK…:secret`` of a key in ``api_keys``): ``POST/GET Messages.json``, ``GET Messages/{Sid}.json``,
``POST/GET Calls.json``, ``GET Calls/{Sid}.json``, ``GET OutgoingCallerIds.json``.
Answers and errors have Twilio's JSON shapes (``{"code","message","more_info","status"}``), so the
official ``twilio`` client works against it (``client.api.base_url = "http://host:port"``).
Validation, error codes and the test-credential magic numbers live in
``simulator/rules.py``; the resources in ``simulator/api.py``, the callbacks in
``simulator/callbacks.py``.

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
callbacks, restore the config given to :func:`create_app`), ``POST /_sim/incoming`` (someone
texts one of your numbers: a signed incoming-message webhook to ``incoming_url``) and
``GET /_sim/incoming`` (the last 1000 posted, with the answers). ``reply_rules`` make
recipients text back by themselves; see ``simulator/incoming.py``.

Deliberate differences from Twilio: any ``From`` is accepted (except the magic ones); the
first status is ``queued`` even with a ``MessagingServiceSid`` (Twilio: ``accepted`` and a
``queued`` callback), whose sender is ``+15005550006``; magic numbers work with any
credentials, and callbacks are sent (Twilio's test credentials send none); callbacks are
retried on non-2xx too (Twilio's default retries only failed connects); no prices.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route

from .api import Simulator, http_error
from .callbacks import IDEMPOTENCY_HEADER
from .config import SimulatorConfig
from .rules import API_VERSION, DEFAULT_CALL_RULES, DEFAULT_RULES, OutcomeRule

__all__ = [
    "DEFAULT_CALL_RULES",
    "DEFAULT_RULES",
    "IDEMPOTENCY_HEADER",
    "OutcomeRule",
    "SimulatorConfig",
    "create_app",
    "serve_simulator",
]


def create_app(config: SimulatorConfig) -> Starlette:
    """The simulator as an ASGI app; its state is ``app.state.sim``."""
    sim = Simulator(config)

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
        Route("/_sim/incoming", sim.sim_incoming, methods=["GET", "POST"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: http_error, 405: http_error},
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
