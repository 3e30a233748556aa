"""The twilio logic's reads: ``fetch_message``, ``fetch_call`` and ``list_caller_ids``."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any

from orchestrator.engine.steps import LogicFailure, StepResult
from orchestrator.twilio import inputs as check
from orchestrator.twilio.client import TwilioClient
from orchestrator.twilio.credentials import Credentials
from orchestrator.twilio.errors import TwilioError

# Caller IDs are listed this many pages deep at most (1000 each).
CALLER_ID_PAGES = 100


async def fetch_message(
    client: TwilioClient,
    creds: Credentials,
    raw: Mapping[str, Any],
    params: Mapping[str, Any],
    result: StepResult,
) -> None:
    message = await _read(client.fetch_message(creds, _sid(raw, params)))
    result.data["status"] = message.get("status")
    if message.get("error_code"):
        result.data["ErrorCode"] = message["error_code"]


async def fetch_call(
    client: TwilioClient,
    creds: Credentials,
    raw: Mapping[str, Any],
    params: Mapping[str, Any],
    result: StepResult,
) -> None:
    sid = _sid(raw, params)
    if not check.SID["CallSid"].match(sid):
        raise check.invalid(raw, "Sid", "must be CA followed by 32 hex digits")
    call = await _read(client.fetch_call(creds, sid))
    result.data["status"] = call.get("status")
    if call.get("duration") is not None:
        result.data["CallDuration"] = call["duration"]


async def caller_ids(client: TwilioClient, creds: Credentials, result: StepResult) -> None:
    """ "Retrieve recipients" (seed 002): every verified caller ID, all pages."""
    try:
        records = await client.list_outgoing_caller_ids(
            creds, page_size=1000, max_pages=CALLER_ID_PAGES
        )
    except TwilioError as exc:
        raise LogicFailure(exc.as_task_data()) from exc
    numbers = [str(r["phone_number"]) for r in records if r.get("phone_number")]
    result.data["recipient_list"] = numbers
    result.data["recipients"] = ",".join(numbers)


def _sid(raw: Mapping[str, Any], params: Mapping[str, Any]) -> str:
    """The ``Sid`` a fetch logic names (MISSING_INPUT when blank)."""
    sid = params.get("Sid")
    if check.blank(sid):
        raise check.missing(raw, "Sid")
    return str(sid)


async def _read(request: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    """A Twilio read; its failure sends the task down the logic's error path."""
    try:
        return await request
    except TwilioError as exc:
        raise LogicFailure(exc.as_task_data()) from exc
