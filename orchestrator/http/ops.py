"""Health, readiness and Prometheus metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from orchestrator.metrics import CONTENT_TYPE
from orchestrator.services.tasks import Service

T = TypeVar("T")


async def _run(request: Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Database work, run the way the runtime says (see Runtime.run_db)."""
    service: Service = request.app.state.service
    return await service.rt.run_db(fn, *args, **kwargs)


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    service: Service = request.app.state.service
    ok = await _run(request, service.rt.db.ping)
    return JSONResponse(
        {"status": "ready" if ok else "database unreachable"}, status_code=200 if ok else 503
    )


async def metrics(request: Request) -> Response:
    """This process's metrics (orchestrator/metrics.py); the database gauges are read
    during the rendering, so it runs where database work runs."""
    service: Service = request.app.state.service
    body = await _run(request, service.rt.metrics.render)
    return Response(body, media_type=CONTENT_TYPE)


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
