"""Twilio's official OpenAPI file (tests/data, from twilio/twilio-oai) as a request checker.

``OpenAPIChecker`` wraps an ASGI app (the simulator): every request under
``/2010-04-01/`` is validated with openapi-core (path, required parameters, formats such
as ``date-time`` and ``phone-number``, enums) and every parameter name is checked against
the operation's list (openapi-core lets unknown form fields through); problems are
collected in ``errors`` and the request goes on unchanged.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import requests
from openapi_core import Config, OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest

# Shipped with the tests (gzipped, see tests/data/README.md); TWILIO_OAI_SPEC may name
# another copy (plain JSON or .gz).
SPEC_PATH = Path(
    os.environ.get(
        "TWILIO_OAI_SPEC", str(Path(__file__).parent / "data" / "twilio_api_v2010.json.gz")
    )
)
TWILIO = "https://api.twilio.com"


@cache
def _spec() -> tuple[OpenAPI, dict[str, Any]]:
    data = SPEC_PATH.read_bytes()
    raw = json.loads(gzip.decompress(data) if SPEC_PATH.suffix == ".gz" else data)
    return OpenAPI.from_dict(raw, config=Config(spec_validator_cls=None)), raw


def _known_names(raw: dict[str, Any], path: str, method: str) -> set[str] | None:
    """Every parameter name the operation accepts (path, query, form), None if unknown."""
    for template, item in raw["paths"].items():
        if not re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path):
            continue
        op = item.get(method.lower())
        if op is None:
            return None
        names = {p["name"] for p in op.get("parameters", [])}
        body = op.get("requestBody", {}).get("content", {})
        form = body.get("application/x-www-form-urlencoded", {}).get("schema", {})
        return names | set(form.get("properties", {}))
    return None


def check_request(
    method: str, path: str, query: str, body: bytes, headers: dict[str, str]
) -> list[str]:
    """Problems with one request against the spec (empty: valid). ``headers``: the
    request's Content-Type and Authorization (the spec requires HTTP Basic)."""
    api, raw = _spec()
    url = f"{TWILIO}{path}" + (f"?{query}" if query else "")
    prepared = requests.Request(method, url, data=body or None, headers=headers).prepare()
    problems = []
    try:
        api.validate_request(RequestsOpenAPIRequest(prepared))
    except Exception as exc:  # openapi-core raises one of many types; all are findings
        cause = exc.__cause__
        problems.append(f"{method} {path}: {exc} {cause or ''}".strip())
    known = _known_names(raw, path, method)
    if known is None:
        problems.append(f"{method} {path}: no such operation in the spec")
    else:
        sent = {k for k, _ in parse_qsl(query)} | {k for k, _ in parse_qsl(body.decode())}
        unknown = sent - known
        if unknown:
            problems.append(f"{method} {path}: unknown parameters {sorted(unknown)}")
    return problems


class OpenAPIChecker:
    """ASGI middleware: check, record, pass on."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.checked: list[str] = []
        self.errors: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/2010-04-01/"):
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        headers = dict((k.decode().lower(), v.decode()) for k, v in scope["headers"])
        query = scope["query_string"].decode()
        self.checked.append(f"{scope['method']} {scope['path']}")
        wanted = {k: v for k, v in headers.items() if k in ("content-type", "authorization")}
        self.errors += check_request(scope["method"], scope["path"], query, body, wanted)
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)
