"""Seed 003's ``POST /api/twilio/sendSms|sendMms|makeCall`` (access as for /api/v1:
http/auth.py). The work is in twilio/package.py; here only the HTTP side."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from orchestrator.http.auth import audit_source
from orchestrator.http.responses import json_object
from orchestrator.services.errors import NotFound
from orchestrator.services.tasks import Service
from orchestrator.twilio import package


async def _operation(request: Request) -> JSONResponse:
    operation = request.path_params["operation"]
    if operation not in package.OPERATIONS:
        names = ", ".join(package.OPERATIONS)
        raise NotFound("NOT_FOUND", f"no operation {operation!r}; there are {names}")
    service: Service = request.app.state.service
    body = await json_object(request)
    status, answer = await package.call(
        service, operation, body, source=audit_source(request, "twilio-package")
    )
    return JSONResponse(answer, status_code=status)


routes = [Route("/api/twilio/{operation}", _operation, methods=["POST"])]
