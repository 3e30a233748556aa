"""Repair over the API (SPEC §7): retry, cancel or move one task, or a node's tasks.

``POST /api/v1/tasks/{task_id}/retry {"node"?}``, ``/cancel {"reason"?, "node"?}``,
``/move {"node"}``; ``POST /api/v1/processes/{process}/nodes/{node}/retry|cancel|move``
with the same fields plus ``limit`` and ``cursor``, answering how many were touched.
An empty body is an empty object. The caller's login goes into the task's history.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from orchestrator.http.auth import audit_source
from orchestrator.http.responses import json_object
from orchestrator.services.errors import Invalid, NotFound
from orchestrator.services.repair import BULK_MAX, Repair
from orchestrator.services.tasks import Service

_FIELDS = {"retry": {"node"}, "cancel": {"reason", "node"}, "move": {"node"}}
_BULK_FIELDS = {"limit", "cursor"}


async def _params(request: Request, action: str, *, bulk: bool) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if (await request.body()).strip():
        body = await json_object(request)
    allowed = _FIELDS[action] | (_BULK_FIELDS if bulk else set())
    unknown = set(body) - allowed
    if unknown:
        raise Invalid("UNKNOWN_FIELDS", f"unknown fields: {', '.join(sorted(unknown))}")
    for name in ("node", "reason", "cursor"):
        value = body.get(name)
        if value is not None and (not isinstance(value, str) or not 1 <= len(value) <= 500):
            raise Invalid("INVALID_FIELD", f"{name} must be a string of 1-500 characters")
    limit = body.get("limit", BULK_MAX)
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise Invalid("INVALID_FIELD", "limit must be a whole number")
    if bulk:
        body["limit"] = limit
    return body


def _repair(request: Request) -> Repair:
    service: Service = request.app.state.service
    return Repair(service)


async def task_action(request: Request) -> JSONResponse:
    action = request.path_params["action"]
    repair = _repair(request)
    if action not in _FIELDS:
        raise NotFound("NOT_FOUND", f"no repair action {action!r}")
    params = await _params(request, action, bulk=False)
    view = await repair.act(
        action, request.path_params["task_id"], who=audit_source(request), **params
    )
    return JSONResponse(view)


async def node_action(request: Request) -> JSONResponse:
    action = request.path_params["action"]
    repair = _repair(request)
    if action not in _FIELDS:
        raise NotFound("NOT_FOUND", f"no repair action {action!r}")
    params = await _params(request, action, bulk=True)
    p = request.path_params
    result = await repair.bulk(p["process"], p["node"], action, who=audit_source(request), **params)
    return JSONResponse(result)


routes = [
    Route("/api/v1/tasks/{task_id}/{action}", task_action, methods=["POST"]),
    Route("/api/v1/processes/{process}/nodes/{node}/{action}", node_action, methods=["POST"]),
]
