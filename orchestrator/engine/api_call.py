"""The ``api_call`` logic: one HTTP request to any server, its answer merged into the task.

Crash safety follows ``twilio/exactly_once.py``: an effect row is committed before the request is
sent, keyed by (task, step, logic). If the step runs again (the worker died after sending,
before its commit), a finished call's stored answer is reused; an unfinished one is sent
again only when the method is idempotent (GET, HEAD, OPTIONS, PUT, DELETE, or
``idempotent: true``); otherwise the task goes to its error path with
``api_outcome_unknown`` rather than calling twice. Every request carries an
``Idempotency-Key`` header that is the same on every attempt of a step, so a server that
honours it can deduplicate too.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from orchestrator import jsontext, secretdata
from orchestrator.engine.definition import Logic
from orchestrator.engine.destinations import (
    Allowlist,
    DestinationForbidden,
    UnresolvableHost,
    resolve,
)
from orchestrator.engine.logic_checks import LogicFail, parse_duration
from orchestrator.engine.logic_types import DURATION_OR_TEMPLATE, LogicType
from orchestrator.engine.plugins import Plugin, StepHandler
from orchestrator.engine.runtime import Runtime
from orchestrator.engine.steps import LogicFailure, StepDeferred, StepResult
from orchestrator.engine.templates import render
from orchestrator.store import effects as effect_store
from orchestrator.store.records import TaskRecord, dumps

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
IDEMPOTENT_METHODS = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE")
FORMATS = ("json", "form", "raw")
DEFAULT_TIMEOUT = 60.0
DEFAULT_RESPONSE_PARAM = "api_response"
# How long after a crashed attempt began its answer could still arrive.
ANSWER_GRACE = 10.0


def failure(tag: str, message: str, **extra: Any) -> LogicFailure:
    return LogicFailure({"error": tag, "code": tag, "message": message, **extra})


class ApiCalls:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.allow = Allowlist.parse(runtime.settings.api_call_allow)

    async def run(
        self,
        task: TaskRecord,
        process_id: int,
        logic: Logic,
        ctx: dict[str, Any],
        result: StepResult,
    ) -> str | None:
        request = self._request(logic, ctx)
        if not any(k.lower() == "idempotency-key" for k in request["headers"]):
            request["headers"]["Idempotency-Key"] = f"{task.id}-{task.step}-{logic.index}"
        timeout = request.pop("timeout")
        idempotent = logic.get("idempotent")
        if idempotent is None:
            idempotent = request["method"] in IDEMPOTENT_METHODS
        summary = {
            "method": request["method"],
            # Only scheme, host and path: a query or body may carry credentials.
            "url": _without_query(request["url"]),
            "sha256": hashlib.sha256(dumps(request).encode()).hexdigest(),
        }
        prior = await self.rt.run_db(self._begin, task, logic.index, summary)
        if prior is not None and prior["status"] == "done":
            outcome = secretdata.unseal(self.rt.vault, prior["result"] or {})
        elif prior is not None and not idempotent:
            settled = prior["created_at"] + timeout + ANSWER_GRACE
            if time.time() < settled:
                raise StepDeferred(settled, "an earlier attempt of this call may still finish")
            outcome = {
                "error": {
                    "error": "api_outcome_unknown",
                    "code": "api_outcome_unknown",
                    "message": f"{request['method']} {summary['url']} was sent by a worker that "
                    "stopped before recording the answer; it was not sent again",
                }
            }
        else:
            outcome = await self._send(request, timeout)
        result.effects_done.append((logic.index, outcome))
        if "error" in outcome:
            raise LogicFailure(dict(outcome["error"]))
        self._merge(outcome["response"], logic, result)
        return None

    def _begin(self, task: TaskRecord, index: int, summary: dict[str, Any]) -> Any:
        with self.rt.db.write() as conn:
            return effect_store.begin(
                conn, task.id, task.step, index, "api_call", summary, time.time()
            )

    # -- the request ---------------------------------------------------------------
    def _request(self, logic: Logic, ctx: dict[str, Any]) -> dict[str, Any]:
        method = str(logic.get("method", "GET")).upper()
        url = render(logic.get("url"), ctx)
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise failure("api_bad_request", f"url {url!r} is not an http(s) URL")
        if not urlsplit(url).hostname:
            raise failure("api_bad_request", f"url {url!r} has no host")
        params = render(dict(logic.get("params") or {}), ctx)
        headers = {
            str(k): _text(v) for k, v in render(dict(logic.get("headers") or {}), ctx).items()
        }
        timeout = parse_duration(render(logic.get("timeout", DEFAULT_TIMEOUT), ctx))
        if timeout is None or timeout <= 0:
            raise failure("api_bad_request", "timeout must be a positive duration")
        request: dict[str, Any] = {
            "method": method,
            "url": url,
            "params": {str(k): _text(v) for k, v in params.items() if v is not None},
            "headers": headers,
            "timeout": timeout,
        }
        if "body" in logic.spec and method not in ("GET", "HEAD"):
            body = render(logic.get("body"), ctx)
            fmt = logic.get("format", "json")
            if fmt == "json":
                request["json"] = body
            elif fmt == "form":
                if not isinstance(body, Mapping):
                    raise failure("api_bad_request", "a form body must be a mapping")
                request["data"] = {str(k): _text(v) for k, v in body.items() if v is not None}
            else:
                request["content"] = body if isinstance(body, str) else json.dumps(body)
                request["headers"].setdefault(
                    "Content-Type", str(logic.get("content_type", "text/plain; charset=utf-8"))
                )
        return request

    async def _send(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        """One attempt; the outcome as stored in the effect record."""
        limit = int(self.rt.settings.max_task_bytes)
        where = f"{request['method']} {_without_query(request['url'])}"
        try:
            request = await self._pinned(request)
        except DestinationForbidden as exc:
            return _error("api_destination_forbidden", f"{where}: {exc}")
        except UnresolvableHost as exc:
            return _error("api_failed_connect", f"{where}: {exc}")
        try:
            async with self.rt.http.stream(**request, timeout=timeout) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > limit:
                        return _error(
                            "api_task_size_overflow_limit",
                            f"{where}: the answer is over {limit} bytes",
                        )
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            return _error("api_failed_connect", f"{where}: cannot connect ({_reason(exc)})")
        except httpx.TimeoutException:
            return _error("api_timeout", f"{where}: no answer within {timeout:g} s")
        except httpx.HTTPError as exc:
            return _error("api_failed_connect", f"{where}: {_reason(exc)}")
        status = response.status_code
        content_type = response.headers.get("content-type", "")
        if not 200 <= status < 300:
            text = bytes(body[:1000]).decode("utf-8", "replace")
            return _error(
                "api_bad_answer",
                f"{where}: HTTP {status}",
                http_status=status,
                response_body=text,
            )
        return {"response": {"status": status, "body": _decode(bytes(body), content_type)}}

    async def _pinned(self, request: dict[str, Any]) -> dict[str, Any]:
        """The request sent to the address its host was checked at (see destinations)."""
        url = httpx.URL(request["url"])
        host = url.raw_host.decode("ascii")
        port = url.port or (443 if url.scheme == "https" else 80)
        address = await resolve(host, port, self.allow)
        headers = dict(request["headers"])
        if not any(k.lower() == "host" for k in headers):
            headers["Host"] = url.netloc.decode("ascii")
        pinned = {**request, "url": url.copy_with(host=address), "headers": headers}
        if url.scheme == "https":
            pinned["extensions"] = {"sni_hostname": host}  # the certificate names the host
        return pinned

    # -- the answer ----------------------------------------------------------------
    def _merge(self, response: Mapping[str, Any], logic: Logic, result: StepResult) -> None:
        body = response.get("body")
        data = dict(result.data)
        if isinstance(body, Mapping):
            data.update(body)
        elif body is not None and body != "":
            data[str(logic.get("response_param", DEFAULT_RESPONSE_PARAM))] = body
        status_param = logic.get("status_param")
        if status_param:
            data[str(status_param)] = response.get("status")
        limit = int(self.rt.settings.max_task_bytes)
        if len(dumps(data).encode()) > limit:
            raise failure(
                "api_task_size_overflow_limit",
                f"the task would be over {limit} bytes with the answer merged",
            )
        result.data.clear()
        result.data.update(data)


def _error(tag: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"error": tag, "code": tag, "message": message, **extra}}


def _decode(body: bytes, content_type: str) -> Any:
    """JSON if it parses as JSON, else text, else base64 (an image, say)."""
    if not body:
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(body).decode()
    if "json" in content_type or text.lstrip()[:1] in ("{", "["):
        try:
            return jsontext.loads(text)  # NaN or runaway nesting: kept as text
        except ValueError:
            pass
    return text


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _steps(rt: Runtime) -> Mapping[str, StepHandler]:
    return {"api_call": ApiCalls(rt)}


def _check(spec: Mapping[str, Any], fail: LogicFail) -> None:
    url = spec.get("url")
    if not isinstance(url, str) or not (url.startswith(("http://", "https://")) or "{{" in url):
        raise fail("must be an http(s) URL (a template is fine)", "url")
    if str(spec.get("method", "GET")).upper() not in METHODS:
        raise fail(f"must be one of {', '.join(METHODS)}", "method")
    if spec.get("format", "json") not in FORMATS:
        raise fail(f"must be one of {', '.join(FORMATS)}", "format")
    for key in ("params", "headers"):
        if not isinstance(spec.get(key, {}), Mapping):
            raise fail("must be a mapping", key)
    timeout = spec.get("timeout")
    if timeout is not None and not (isinstance(timeout, str) and "{{" in timeout):
        seconds = parse_duration(timeout)
        if seconds is None or seconds <= 0:
            raise fail("must be a positive duration such as 10, '30s' or '2min'", "timeout")


API_CALL = LogicType(
    "api_call",
    description="an HTTP request",
    fields={
        "method": {"type": "string", "pattern": f"^(?i:{'|'.join(METHODS)})$"},
        "url": {"type": "string"},
        "params": {"type": "object"},
        "headers": {"type": "object"},
        "format": {"enum": list(FORMATS)},
        "body": {},
        "content_type": {"type": "string"},
        "timeout": DURATION_OR_TEMPLATE,
        "response_param": {"type": "string"},
        "status_param": {"type": "string"},
        "idempotent": {"type": "boolean"},
    },
    required=("url",),
    check=_check,
    needs_on_error=True,
)

plugin: Plugin[Runtime] = Plugin("api_call", steps=_steps, logic_types=(API_CALL,))
