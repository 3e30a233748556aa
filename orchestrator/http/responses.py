"""JSON responses and request-body parsing shared by the routes."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from orchestrator.engine.service import ApiError


def error_response(err: ApiError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status)


async def json_body(request: Request) -> Any:
    """The body as JSON; MALFORMED_JSON (400) for anything that is not."""
    raw = await request.body()
    if not raw.strip():
        raise ApiError(400, "MALFORMED_JSON", "the request body is empty; send a JSON object")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "MALFORMED_JSON", f"the body is not valid JSON: {exc}") from exc


async def json_object(request: Request) -> dict[str, Any]:
    body = await json_body(request)
    if not isinstance(body, dict):
        raise ApiError(422, "INVALID_BODY", "the body must be a JSON object")
    return body
