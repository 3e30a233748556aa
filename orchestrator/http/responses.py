"""JSON responses and request-body parsing shared by the routes."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from orchestrator import jsontext
from orchestrator.http.errors import http_status
from orchestrator.services.errors import BadInput, Invalid, ServiceError, UnsupportedMedia


def error_response(err: ServiceError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=http_status(err))


def check_json_type(request: Request) -> None:
    """A declared Content-Type must be JSON in UTF-8 (UNSUPPORTED_MEDIA_TYPE, 415); a body
    sent without one is read as JSON, as curl and simple clients send it."""
    declared = request.headers.get("content-type")
    if declared is None:
        return
    mime, _, params = declared.partition(";")
    mime = mime.strip().lower()
    charset = ""
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    if (mime == "application/json" or mime.endswith("+json")) and charset in ("", "utf-8", "utf8"):
        return
    raise UnsupportedMedia("UNSUPPORTED_MEDIA_TYPE", "send the body as application/json (UTF-8)")


async def json_body(request: Request) -> Any:
    """The body as JSON; MALFORMED_JSON (400) for anything that is not."""
    check_json_type(request)
    raw = await request.body()
    if not raw.strip():
        raise BadInput("MALFORMED_JSON", "the request body is empty; send a JSON object")
    try:
        return jsontext.loads(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise BadInput("MALFORMED_JSON", f"the body is not valid JSON: {exc}") from exc


async def json_object(request: Request) -> dict[str, Any]:
    body = await json_body(request)
    if not isinstance(body, dict):
        raise Invalid("INVALID_BODY", "the body must be a JSON object")
    return body
