"""Seed 003's Twilio package (``/api/twilio/sendSms|sendMms|makeCall``) on top of the
shipped processes (SPEC §7 "Twilio-package-compatible API").

Each request becomes a task in Sending SMS (sendSms, sendMms) or Voice call (makeCall),
so the message or call is followed to its final status like any other. The answer waits
until Twilio has answered the create (the task has a ``sid``, or has ended), then gives
the package's shapes: ``{"callback": "success", "contextWrites": {"to": {Twilio's
resource…, "task_id"}}}``, or ``{"callback": "error", "contextWrites": {"to": "[HTTP 400]
Unable to create record: <Twilio's message>"}}``; missing or invalid input is the same
error shape with a named reason (``MISSING_INPUT: to is required``).
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from orchestrator import secretdata
from orchestrator.services.errors import ServiceError
from orchestrator.services.tasks import Service
from orchestrator.store import effects as effect_store

# The package's field → the shipped processes' task parameter.
FIELDS = {
    "accountSid": "AccountSid",
    "accountToken": "AuthToken",
    "from": "Number_from",
    "to": "Number_to",
    "body": "Body",
    "messagingServiceSid": "MessagingServiceSid",
    "mediaUrl": "MediaUrl",
    "url": "Url",
    "applicationSid": "ApplicationSid",
}
PACKAGE_NAMES = {task: package for package, task in FIELDS.items()}
_CREDENTIALS = ("accountSid", "accountToken")
# operation → (process, fields it takes)
OPERATIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sendSms": ("sending-sms", (*_CREDENTIALS, "from", "to", "body", "messagingServiceSid")),
    "sendMms": (
        "sending-sms",
        (*_CREDENTIALS, "from", "to", "body", "messagingServiceSid", "mediaUrl"),
    ),
    "makeCall": ("voice-call", (*_CREDENTIALS, "from", "to", "url", "applicationSid")),
}
POLL_FIRST, POLL_MAX = 0.02, 0.25
# The longest wait for Twilio's answer to the create, whatever the retry settings say.
MAX_WAIT = 120.0
_FIELD_FIRST = re.compile(r"^([A-Za-z_]+)\b")


class PackageError(Exception):
    """A request refused before any task exists: answered in the package's error shape."""


def error_answer(reason: str, **extra: Any) -> dict[str, Any]:
    return {"callback": "error", "contextWrites": {"to": reason}, **extra}


def task_data(operation: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(process, task data) for a package request; PackageError names what is wrong."""
    process, allowed = OPERATIONS[operation]
    unknown = sorted(k for k, v in body.items() if k not in allowed and v is not None)
    if unknown:
        raise PackageError(
            f"INVALID_INPUT: unknown field(s) {', '.join(unknown)}; "
            f"{operation} takes {', '.join(allowed)}"
        )
    if operation == "sendMms" and body.get("mediaUrl") in (None, "", []):
        raise PackageError("MISSING_INPUT: mediaUrl is required")
    data = {FIELDS[k]: v for k, v in body.items() if v is not None}
    if isinstance(data.get("MediaUrl"), str):
        data["MediaUrl"] = [data["MediaUrl"]]
    return process, data


def failure_reason(data: dict[str, Any]) -> str:
    """The package's error text for a task that ended before Twilio created anything."""
    error = str(data.get("error") or data.get("code") or "UNKNOWN_ERROR")
    message = str(data.get("message") or "")
    status = str(data.get("statusCode") or "")
    if error not in ("MISSING_INPUT", "INVALID_INPUT") and re.fullmatch(r"[45][0-9]{2}", status):
        return f"[HTTP {status}] Unable to create record: {message}"
    # Our messages start with the task parameter: name the package's field instead.
    named = _FIELD_FIRST.sub(lambda m: PACKAGE_NAMES.get(m.group(1), m.group(1)), message, 1)
    return f"{error}: {named}"


async def call(
    service: Service, operation: str, body: dict[str, Any], *, source: str
) -> tuple[int, dict[str, Any]]:
    """Run one package request: (HTTP status, answer)."""
    try:
        process, data = task_data(operation, body)
    except PackageError as exc:
        return 200, error_answer(str(exc))
    rt = service.rt
    # As long as the Twilio client may take over the create, retries included.
    wait = min(
        MAX_WAIT, rt.settings.twilio_timeout * max(rt.settings.twilio_max_attempts, 1) + 10.0
    )
    try:
        view, _new = await service.create_task(process, None, data, source=source)
    except ServiceError as exc:
        return 200, error_answer(f"{exc.code}: {exc.message}")
    task_id = str(view["task_id"])
    deadline, delay = time.monotonic() + wait, POLL_FIRST
    # Until Twilio has answered the create: the task has its sid, or it has ended.
    while "sid" not in view["data"] and view["state"] != "done":
        if time.monotonic() >= deadline:
            reason = (
                f"TIMEOUT: Twilio has not answered within {wait:g} s; the task {task_id} "
                f"goes on: GET /api/v1/tasks/{task_id}"
            )
            return 504, error_answer(reason, task_id=task_id)
        await asyncio.sleep(delay)
        delay = min(delay * 2, POLL_MAX)
        view = await service.get_task(task_id)
    if "sid" not in view["data"]:
        return 200, error_answer(failure_reason(view["data"]), task_id=task_id)
    stored = await rt.run_db(_created, service, task_id)
    resource = dict(stored or {"sid": view["data"]["sid"], "status": view["data"].get("status")})
    return 200, {"callback": "success", "contextWrites": {"to": {**resource, "task_id": task_id}}}


def _created(service: Service, task_id: str) -> dict[str, Any] | None:
    with service.rt.db.read() as conn:
        stored = effect_store.created_resource(conn, task_id)
    if stored is None:
        return None
    message = secretdata.unseal(service.rt.vault, stored).get("message")
    return dict(message) if isinstance(message, dict) else None
