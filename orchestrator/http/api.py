"""The REST API under /api/v1 (SPEC §7)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from orchestrator.engine import opt_outs
from orchestrator.http import apidoc, repair
from orchestrator.http.auth import audit_source
from orchestrator.http.responses import json_body, json_object
from orchestrator.services.errors import Invalid
from orchestrator.services.tasks import Service

MAX_OPT_OUTS = opt_outs.MAX_LIST


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


async def create_task(request: Request) -> JSONResponse:
    body = await json_object(request)
    unknown = set(body) - {"ref", "data"}
    if unknown:
        raise Invalid("UNKNOWN_FIELDS", f"unknown fields: {', '.join(sorted(unknown))}")
    if "data" not in body:
        raise Invalid("MISSING_DATA", "the body needs a data object")
    view, created = await _service(request).create_task(
        request.path_params["process"],
        body.get("ref"),
        body["data"],
        source=audit_source(request),
    )
    return JSONResponse(view, status_code=201 if created else 200)


async def get_task(request: Request) -> JSONResponse:
    return JSONResponse(await _service(request).get_task(request.path_params["task_id"]))


async def task_history(request: Request) -> JSONResponse:
    events = await _service(request).history(request.path_params["task_id"])
    return JSONResponse({"task_id": request.path_params["task_id"], "events": events})


def _int(value: str | None, name: str, default: int) -> int:
    if value is None:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise Invalid("INVALID_FILTER", f"{name} must be a whole number") from exc


async def list_tasks(request: Request) -> JSONResponse:
    q = request.query_params
    page = await _service(request).list_tasks(
        request.path_params["process"],
        ref=q.get("ref"),
        node=q.get("node"),
        state=q.get("state"),
        outcome=q.get("outcome"),
        limit=_int(q.get("limit"), "limit", 50),
        cursor=q.get("cursor"),
    )
    return JSONResponse(page)


async def modify_task(request: Request) -> JSONResponse:
    body = await json_object(request)
    unknown = set(body) - {"data"}  # the ref is in the path; a stray one is a mistake
    if unknown:
        raise Invalid("UNKNOWN_FIELDS", f"unknown fields: {', '.join(sorted(unknown))}")
    if "data" not in body:
        raise Invalid("MISSING_DATA", "the body needs a data object")
    view = await _service(request).modify_by_ref(
        request.path_params["process"],
        request.path_params["ref"],
        body["data"],
        source=audit_source(request),
    )
    return JSONResponse(view)


async def list_processes(request: Request) -> JSONResponse:
    return JSONResponse({"processes": await _service(request).list_processes()})


async def get_process(request: Request) -> JSONResponse:
    return JSONResponse(await _service(request).process_view(request.path_params["process"]))


async def deploy_process(request: Request) -> JSONResponse:
    body: Any = await json_body(request)
    items = body if isinstance(body, list) else [body]
    if not all(isinstance(i, dict) for i in items):
        raise Invalid("INVALID_BODY", "send a process definition (or a list of them)")
    results = await _service(request).deploy([(i, None) for i in items])
    created = any(r.created for r in results)
    return JSONResponse(
        {
            "deployed": [
                {
                    "slug": r.slug,
                    "conv_id": r.conv_id,
                    "version": r.version,
                    "created": r.created,
                    "changes": r.changes,
                    "details": r.details,
                }
                for r in results
            ]
        },
        status_code=201 if created else 200,
    )


async def list_opt_outs(request: Request) -> JSONResponse:
    """Recipients who opted out of a sender (SPEC §10), newest first."""
    query = request.query_params
    unknown = set(query) - {"recipient", "sender", "limit"}
    if unknown:
        raise Invalid("INVALID_FILTER", f"unknown filters: {', '.join(sorted(unknown))}")
    raw_limit = query.get("limit", "100")
    if not (raw_limit.isascii() and raw_limit.isdigit() and 1 <= int(raw_limit) <= MAX_OPT_OUTS):
        raise Invalid("INVALID_FILTER", f"limit must be 1-{MAX_OPT_OUTS}")
    rows = await _service(request).opt_outs(
        recipient=query.get("recipient") or None,
        sender=query.get("sender") or None,
        limit=int(raw_limit),
    )
    return JSONResponse({"opt_outs": rows})


async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(apidoc.document(await _service(request).process_inputs()))


routes = [
    Route("/api/v1/openapi.json", openapi, methods=["GET"]),
    Route("/api/v1/processes", list_processes, methods=["GET"]),
    Route("/api/v1/processes", deploy_process, methods=["POST"]),
    Route("/api/v1/processes/{process}", get_process, methods=["GET"]),
    Route("/api/v1/processes/{process}/tasks", create_task, methods=["POST"]),
    Route("/api/v1/processes/{process}/tasks", list_tasks, methods=["GET"]),
    Route("/api/v1/processes/{process}/tasks/{ref:path}", modify_task, methods=["PATCH"]),
    Route("/api/v1/tasks/{task_id}", get_task, methods=["GET"]),
    Route("/api/v1/tasks/{task_id}/history", task_history, methods=["GET"]),
    *repair.routes,
    Route("/api/v1/opt-outs", list_opt_outs, methods=["GET"]),
]
