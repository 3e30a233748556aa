"""Callback URLs of wait nodes (SPEC §5): JSON, the Twilio plugin form, and NVP.

Each handler only checks the URL hash (and, for Twilio, the signature), stores the
callback in the inbox and answers 200; the engine applies it moments later. The hash is
checked before the body is read: an unknown URL costs no parsing. Form bodies are parsed
in linear time and refused above MAX_FORM_FIELDS fields (Twilio sends some 20).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from orchestrator.http.responses import json_object
from orchestrator.logs import redact_path
from orchestrator.services.errors import BadInput, ServiceError, TooLarge, UnsupportedMedia
from orchestrator.services.tasks import Service

log = logging.getLogger("orchestrator.webhooks")

FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FORM_FIELDS = 1000


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


async def _check_url(request: Request) -> None:
    """404 for a URL that names no wait node, before anything reads the body."""
    conv_id, given = request.path_params["conv_id"], request.path_params["hash"]
    await _service(request).callbacks.check_callback_url(conv_id, given)


async def _form_pairs(request: Request) -> list[tuple[str, str]]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != FORM_TYPE:
        raise UnsupportedMedia("UNSUPPORTED_MEDIA_TYPE", f"send {FORM_TYPE} name=value pairs")
    await _check_url(request)
    raw = await request.body()
    if raw.count(b"&") >= MAX_FORM_FIELDS:
        raise TooLarge(
            "TOO_MANY_FIELDS", f"a callback form may have at most {MAX_FORM_FIELDS} fields"
        )
    try:
        # Blank values count: Twilio signs them too.
        return parse_qsl(raw.decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadInput("MALFORMED_FORM", "the body is not valid form data") from exc


def _flatten(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """A repeated name gives a list of its values (appended in place: linear time)."""
    out: dict[str, Any] = {}
    repeated: set[str] = set()
    for k, v in pairs:
        if k not in out:
            out[k] = v
        elif k in repeated:
            out[k].append(v)
        else:
            out[k] = [out[k], v]
            repeated.add(k)
    return out


async def _accept(request: Request, form: str, payload: dict[str, Any], **kw: Any) -> Response:
    p = request.path_params
    result = await _service(request).callbacks.receive_callback(
        form,
        p["conv_id"],
        p["hash"],
        payload,
        source_ip=f"{form}:{request.client.host if request.client else 'unknown'}",
        **kw,
    )
    if "twiml" in result:
        # An incoming SMS (SPEC §10): Twilio reads the answer as TwiML.
        return Response(result["twiml"], media_type="text/xml")
    return JSONResponse(result)


Handler = Callable[[Request], Awaitable[Response]]


def _watched(form: str) -> Callable[[Handler], Handler]:
    """Every refused callback is counted and logged at WARNING with its reason; the
    path is logged with its hash hidden (it is the URL's credential)."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def watched(request: Request) -> Response:
            try:
                return await handler(request)
            except ServiceError as exc:
                reason = _service(request).callbacks.count_refusal(form, exc.code)
                path = redact_path(request.url.path)
                log.warning(
                    "callback refused (%s: %s) on POST %s",
                    reason,
                    exc.code,
                    path,
                    extra={"reason": reason, "code": exc.code, "form": form, "path": path},
                )
                raise

        return watched

    return wrap


@_watched("json")
async def json_callback(request: Request) -> Response:
    await _check_url(request)
    payload = await json_object(request)
    return await _accept(
        request, "json", payload, idem_token=request.headers.get("idempotency-key")
    )


@_watched("twilio")
async def twilio_callback(request: Request) -> Response:
    pairs = await _form_pairs(request)
    return await _accept(
        request,
        "twilio",
        _flatten(pairs),
        url=_service(request).callbacks.signed_url(request.url.path, request.url.query),
        signature=request.headers.get("x-twilio-signature"),
        form_pairs=pairs,
        idem_token=request.headers.get("i-twilio-idempotency-token"),
    )


@_watched("nvp")
async def nvp_callback(request: Request) -> Response:
    pairs = await _form_pairs(request)
    return await _accept(
        request,
        "nvp",
        _flatten(pairs),
        task_id=request.path_params["task_id"],
        idem_token=request.headers.get("idempotency-key"),
    )


routes = [
    Route("/api/1/json/callback/{conv_id}/{hash}", json_callback, methods=["POST"]),
    Route("/api/1/json/plugins/twilio/{conv_id}/{hash}", twilio_callback, methods=["POST"]),
    Route("/api/1/nvp/callback/{conv_id}/{hash}/{task_id}", nvp_callback, methods=["POST"]),
]
