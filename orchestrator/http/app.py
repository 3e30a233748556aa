"""The Starlette application: API, webhooks, health; runs the engine in its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from orchestrator.config import Settings
from orchestrator.engine.runtime import Runtime
from orchestrator.engine.worker import Worker
from orchestrator.http import api, apipage, corezoid, ops, twilio_package, webhooks
from orchestrator.http.auth import ApiAuthMiddleware, warn_if_open
from orchestrator.http.console import routes as console
from orchestrator.http.headers import BASE_HEADERS, SecurityHeadersMiddleware
from orchestrator.http.inputs import UrlTextMiddleware
from orchestrator.http.limits import BodyLimitMiddleware
from orchestrator.http.observe import RequestMetricsMiddleware
from orchestrator.http.responses import error_response
from orchestrator.http.routing import MemoRouter
from orchestrator.logs import redact_path
from orchestrator.services.access import Access
from orchestrator.services.apikeys import parse_env_keys
from orchestrator.services.deploy import ensure_shipped
from orchestrator.services.errors import ServiceError
from orchestrator.services.health import Health
from orchestrator.services.tasks import Service
from orchestrator.twilio.reconcile import recheck_after_restart

log = logging.getLogger("orchestrator.http")
_HASH = re.compile(r"[0-9a-f]{40}")


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
    return JSONResponse(
        {"error": {"code": code, "message": str(exc.detail)}}, status_code=exc.status_code
    )


async def _server_error(request: Request, exc: Exception) -> Response:
    # Callback URL hashes are credentials: kept out of the log.
    path = redact_path(_HASH.sub("<hash>", request.url.path))
    log.exception("unhandled error on %s %s", request.method, path)
    return JSONResponse(
        {
            "error": {
                "code": "INTERNAL_ERROR",
                "message": "the server could not handle this request",
            }
        },
        status_code=500,
        # Starlette answers this outside every middleware: the headers are added here.
        headers=BASE_HEADERS,
    )


def create_app(
    settings: Settings | None = None, *, runtime: Runtime | None = None, run_engine: bool = True
) -> Starlette:
    settings = settings or Settings.from_env()
    parse_env_keys(settings.api_keys)  # a malformed ORCH_API_KEYS stops the start (ApiKeyError)
    rt = runtime or Runtime(settings)
    # What the routes are given (app.state): the services, never the runtime itself.
    service, access, health = Service(rt), Access(rt), Health(rt)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(ensure_shipped, rt)
        await asyncio.to_thread(rt.prepare)
        await warn_if_open(access)
        worker = Worker(rt) if run_engine else None
        if worker is None:
            # Callbacks sent while this API was down are gone: let the engines look
            # those messages up soon (an engine does this itself when it starts).
            await asyncio.to_thread(recheck_after_restart, rt, time.time())
        if worker is not None:
            worker.acquire_lock()  # a refused engine stops the server from starting
        app.state.worker = worker
        runner = asyncio.create_task(worker.run()) if worker else None
        try:
            yield
        finally:
            if worker is not None and runner is not None:
                await worker.stop()
                runner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await runner
            await rt.aclose()

    app = Starlette(
        # Webhooks before the Corezoid API: /api/1/json/callback/{conv_id}/{hash} has the
        # shape of /api/1/json/{login}/{time}/{signature} ("callback" is a reserved login).
        routes=[
            *api.routes,
            *twilio_package.routes,
            *webhooks.routes,
            *corezoid.routes,
            *ops.routes,
            *apipage.routes,
            *console.routes,
        ],
        exception_handlers={
            ServiceError: _api_error,
            HTTPException: _http_error,
            Exception: _server_error,
        },
        lifespan=lifespan,
    )
    # The same routes, through a router that remembers each path's route (http/routing.py).
    app.router = MemoRouter(app.router.routes, lifespan=lifespan)
    app.state.service, app.state.access, app.state.health = service, access, health
    app.state.worker = None
    health.track(lambda: app.state.worker.steps if app.state.worker is not None else None)
    # The last added runs first: headers on every answer, then the URL's text, then the
    # size limit, then auth.
    app.add_middleware(ApiAuthMiddleware, access=access)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_request_bytes,
        body_timeout=settings.body_timeout,
    )
    app.add_middleware(UrlTextMiddleware)
    app.add_middleware(
        SecurityHeadersMiddleware, https=settings.public_url.lower().startswith("https://")
    )
    # Outermost: the latency includes every middleware, and every answer is counted.
    app.add_middleware(RequestMetricsMiddleware, metrics=rt.metrics)
    return app
