"""A create whose answer never came (a timeout, a worker that died waiting): the message
it may have created is looked up in Twilio and adopted if exactly one matches; otherwise
the send ends with TWILIO_OUTCOME_UNKNOWN. It is never sent again blindly."""

from __future__ import annotations

import datetime as dt
import email.utils
from collections.abc import Mapping
from typing import Any

from orchestrator.twilio.client import TwilioClient
from orchestrator.twilio.credentials import Credentials
from orchestrator.twilio.errors import TwilioError


async def resolve_unknown(
    client: TwilioClient,
    creds: Credentials,
    form: dict[str, Any],
    since: float,
    kind: str,
    why: str,
) -> dict[str, Any]:
    """Find the message a lost answer would have described; adopt it if exactly one
    matches, else give up with TWILIO_OUTCOME_UNKNOWN (never send again). Calls are
    not looked up: a second call to a person is worse than an escalation."""
    found = None
    if kind == "message":
        # On or after the attempt's day: it may have begun before midnight (UTC).
        day = dt.datetime.fromtimestamp(since, dt.UTC).strftime("%Y-%m-%d")
        try:
            found = await client.list_messages(
                creds, to=form["To"], from_=form.get("From"), date_sent_after=f"{day}T00:00:00Z"
            )
        except TwilioError:
            found = None
    if found is not None:
        matches = [m for m in found if same_message(m, form, since)]
        if len(matches) == 1:
            return {"message": matches[0], "adopted": True, "why": why, "since": since}
    return {
        "error": {
            "error": "TWILIO_OUTCOME_UNKNOWN",
            "code": "TWILIO_OUTCOME_UNKNOWN",
            "message": f"Twilio did not answer after the request was sent and no matching "
            f"{kind} was found; it was not re-sent",
        }
    }


def adoption(outcome: Mapping[str, Any]) -> dict[str, Any]:
    """The ``twilio_adopted`` event's detail: why the answer was missing, how the
    message was found."""
    since = outcome.get("since")
    when = dt.datetime.fromtimestamp(since, dt.UTC).isoformat() if since else None
    return {
        "why": outcome.get("why", "the create's answer was lost"),
        "found_by": f"the one message listed with the same To, From and Body since {when}",
    }


def same_message(message: Mapping[str, Any], form: Mapping[str, Any], since: float) -> bool:
    if message.get("to") != form["To"]:
        return False
    if form.get("From") and message.get("from") != form["From"]:
        return False
    if "Body" in form and message.get("body") != form["Body"]:
        return False
    created = message.get("date_created")
    if isinstance(created, str):
        try:
            when = email.utils.parsedate_to_datetime(created).timestamp()
        except (TypeError, ValueError):
            return True
        return when >= since - 60
    return True
