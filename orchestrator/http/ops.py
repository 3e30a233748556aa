"""Health, readiness and Prometheus metrics."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from orchestrator.metrics import CONTENT_TYPE
from orchestrator.services.health import Health


def _health(request: Request) -> Health:
    health: Health = request.app.state.health
    return health


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    ok = await _health(request).ready()
    return JSONResponse(
        {"status": "ready" if ok else "database unreachable"}, status_code=200 if ok else 503
    )


async def metrics(request: Request) -> Response:
    """This process's metrics (orchestrator/metrics.py)."""
    return Response(await _health(request).metrics(), media_type=CONTENT_TYPE)


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
