"""Seed 002's result names on every ``twilio`` logic: ``statusCode``, ``status``,
``message``, ``failedNumbers`` (the Flogo Twilio activity's outputs), beside our own.

``statusCode`` (text, as the activity gives it): Twilio's HTTP status (``201`` a create,
``200`` a read; ``400``, ``401``, ``404``, ``429``, ``500``, ``503`` … an error); ``901``
Twilio could not be reached; ``501`` blank body, ``502`` blank To, ``503`` blank From,
``504`` blank base URL, ``505`` blank AccountSid, ``506`` blank AuthToken; ``400`` another
invalid input; ``1001`` anything else (see ``message``). ``status`` is Twilio's status of
the message or call when Twilio gave one (never written on a failure: a refused request
has no message status). ``message`` is the error's text, or the comma-separated list of
``list_caller_ids``. ``failedNumbers`` lists the numbers a failed send was for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.twilio import inputs as check

# MISSING_INPUT of these logic parameters has the activity's blank-field code.
BLANK_CODES = {
    "Body": "501",
    "To": "502",
    "From": "503",
    "base_url": "504",
    "AccountSid": "505",
    "AuthToken": "506",
    "ApiKeySecret": "506",
}
CONNECTIVITY_ERROR = "901"
INTERNAL_ERROR = "1001"


def _param(raw: Mapping[str, Any], field: Any) -> str | None:
    """The logic parameter an error's ``field`` (a task parameter) came through."""
    for name, value in raw.items():
        if check.source_name(value, name) == field:
            return str(name)
    return str(field) if field else None


def failure(
    fields: Mapping[str, Any], raw: Mapping[str, Any], params: Mapping[str, Any]
) -> dict[str, Any]:
    """``fields`` of a failed twilio logic with the seed 002 names added."""
    out = dict(fields)
    error = out.get("error")
    if "statusCode" not in out:
        if error == "MISSING_INPUT":
            code = BLANK_CODES.get(_param(raw, out.get("field")) or "", "400")
        elif error == "INVALID_INPUT":
            code = "400"
        elif error == "TWILIO_CONNECTION_ERROR":
            code = CONNECTIVITY_ERROR
        elif error == "AUTHENTICATION_CONNECTION_ERROR":
            code = "401"
        else:
            code = INTERNAL_ERROR
        out["statusCode"] = code
    if "failedNumbers" not in out:
        to = params.get("To")
        numbers = to if isinstance(to, list) else ([] if check.blank(to) else [to])
        out["failedNumbers"] = ",".join(str(n) for n in numbers)
    return out


def success(action: str, data: dict[str, Any]) -> None:
    """Add the seed 002 names to a successful twilio logic's result (in place)."""
    if action in ("send_sms", "send_mms", "make_call"):
        data["statusCode"] = "201"
        data["failedNumbers"] = ""
    elif action == "send_to_many":
        failed = data.get("failedNumbers") or ""
        data["statusCode"] = "201" if data.get("smsResult") or not failed else "400"
    elif action == "list_caller_ids":
        data["statusCode"] = "200"
        data["message"] = data.get("recipients", "")
    else:  # fetches
        data["statusCode"] = "200"
