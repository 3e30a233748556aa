"""Corezoid task operations (``{"ops": [...]}``: create, modify, show) on top of the
service, answered as Corezoid does: ``request_proc`` for the package, ``proc`` per op.

Signature, clock and replay checks are the HTTP layer's (http/corezoid.py); this module
only needs an authenticated caller's ops.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from orchestrator import jsontext
from orchestrator.services.errors import Invalid, ServiceError
from orchestrator.services.tasks import Service

MAX_OPS = 100

# Our error codes as Corezoid's op tags (others answer "error" with a description).
TAGS = {
    "REF_CONFLICT": "not_unical_ref",
    "TASK_NOT_FOUND": "not_found_task",
    "TASK_NOT_WAITING": "no_api_callback_in_node_with_task",
    "PROCESS_NOT_FOUND": "access_denied",
    "TASK_TOO_LARGE": "task_size_overflow_limit",
}


class FormatError(ValueError):
    """The package as a whole is unusable: ``request_proc: format_error``."""


def parse_package(raw: bytes) -> list[Any]:
    """The ops of a raw body, whatever its Content-Type said."""
    try:
        body = jsontext.loads(raw)
    except ValueError as exc:
        raise FormatError("the body is not valid JSON") from exc
    if not isinstance(body, dict) or not isinstance(body.get("ops"), list):
        raise FormatError('the body must be {"ops": [...]}')
    ops: list[Any] = body["ops"]
    if not ops:
        raise FormatError("ops is empty")
    if len(ops) > MAX_OPS:
        raise FormatError(f"at most {MAX_OPS} ops per request")
    return ops


def format_error(description: str) -> dict[str, Any]:
    return {"request_proc": "format_error", "description": description, "ops": []}


def _text(value: Any, name: str, max_len: int = 255) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise Invalid("INVALID_OP", f"{name} must be a string or a number")
    text = str(value)
    if not 1 <= len(text) <= max_len:
        raise Invalid("INVALID_OP", f"{name} must be 1-{max_len} characters")
    return text


def _unix(iso_ts: str | None) -> int | None:
    return int(dt.datetime.fromisoformat(iso_ts).timestamp()) if iso_ts else None


def _status(view: dict[str, Any]) -> str:
    return "processed" if view["state"] == "done" else "processing"


def _show(view: dict[str, Any]) -> dict[str, Any]:
    return {
        "obj_id": view["task_id"],
        "task_id": view["task_id"],
        "ref": view["ref"],
        "conv_id": view["conv_id"],
        "status": _status(view),
        "node_id": view["node"]["id"],
        "state": view["state"],
        "outcome": view["outcome"],
        "create_time": _unix(view["created_at"]),
        "change_time": _unix(view["updated_at"]),
        "data": view["data"],
    }


async def run_op(service: Service, op: Any, source: str) -> dict[str, Any]:
    """One op's result entry; never raises a ServiceError (it becomes the op's ``proc``)."""
    if not isinstance(op, dict):
        return {"id": "", "proc": "error", "description": "an op must be a JSON object"}
    head: dict[str, Any] = {"id": op.get("id", ""), "obj": op.get("obj", "task")}
    try:
        if op.get("obj", "task") != "task":
            raise Invalid("INVALID_OP", "only obj task is supported")
        conv_id = _text(op.get("conv_id", op.get("obj_alias")), "conv_id", 100)
        if conv_id is None:
            raise Invalid("INVALID_OP", "conv_id is required")
        ref = _text(op.get("ref"), "ref")
        task_id = _text(op.get("obj_id"), "obj_id", 24)
        kind = op.get("type")
        if ref is not None:
            head["ref"] = ref
        if kind == "create":
            view, _created = await service.create_task(conv_id, ref, op.get("data"), source=source)
            return {**head, "proc": "ok", "obj_id": view["task_id"]}
        if kind == "modify":
            if ref is None and task_id is None:
                raise Invalid("INVALID_OP", "modify needs a ref or an obj_id")
            view = await service.modify(
                conv_id, op.get("data"), ref=ref, task_id=task_id, source=source
            )
            return {**head, "proc": "ok", "obj_id": view["task_id"]}
        if kind == "show":
            if ref is None and task_id is None:
                raise Invalid("INVALID_OP", "show needs a ref or an obj_id")
            view = await service.find_task(conv_id, ref=ref, task_id=task_id)
            return {**head, "proc": "ok", **_show(view)}
        raise Invalid("INVALID_OP", "type must be create, modify or show")
    except ServiceError as exc:
        return {
            **head,
            "proc": TAGS.get(exc.code, "error"),
            "code": exc.code,
            "description": exc.message,
        }


async def run_package(service: Service, ops: list[Any], source: str) -> dict[str, Any]:
    """The ops one after another (each its own transaction), answered in order."""
    return {"request_proc": "ok", "ops": [await run_op(service, op, source) for op in ops]}


_TIME = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")


def parse_time(text: str) -> float | None:
    """The path's time as Unix seconds: an integer, or the float the PyPI client sends."""
    return float(text) if _TIME.fullmatch(text) else None
