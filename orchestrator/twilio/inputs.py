"""Input checks for the ``twilio`` logic: every problem is a named error before any call.

Each check raises ``LogicFailure`` with ``MISSING_INPUT`` or ``INVALID_INPUT`` and the
task parameter the value came from (``{{ Number_to }}`` names ``Number_to``), so nothing
is sent and the task escalates with an error that says which field to fix.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

import phonenumbers

from orchestrator.config import Settings
from orchestrator.engine import phones
from orchestrator.engine.steps import LogicFailure
from orchestrator.twilio.credentials import Credentials, api_base

_E164 = re.compile(r"^\+[1-9][0-9]{1,14}\Z")  # ASCII only: \d also takes other scripts' digits
_ALPHA_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}\Z")
_SHORT_CODE = re.compile(r"^[0-9]{5,6}\Z")
_SOURCE = re.compile(r"\{\{\s*([A-Za-z_][\w.]*)")
SID = {
    "AccountSid": re.compile(r"^AC[0-9a-fA-F]{32}\Z"),
    "ApiKeySid": re.compile(r"^SK[0-9a-fA-F]{32}\Z"),
    "MessagingServiceSid": re.compile(r"^MG[0-9a-fA-F]{32}\Z"),
    "ApplicationSid": re.compile(r"^AP[0-9a-fA-F]{32}\Z"),
    "Sid": re.compile(r"^(SM|MM)[0-9a-fA-F]{32}\Z"),
    "CallSid": re.compile(r"^CA[0-9a-fA-F]{32}\Z"),
}
MAX_BODY = 1600
MAX_MEDIA = 10
MAX_RECIPIENTS = 1000
# Twilio's call progress events (StatusCallbackEvent).
CALL_EVENTS = ("initiated", "ringing", "answered", "completed")


# Parameters Twilio takes as one text value (a number is taken as its digits).
TEXT_PARAMS = (
    "AccountSid", "AuthToken", "ApiKeySid", "ApiKeySecret", "From", "MessagingServiceSid",
    "Body", "BodyTemplate", "Url", "ApplicationSid", "Twiml", "Method", "Sid",
    "ValidityPeriod", "Timeout",
)  # fmt: skip
# Parameters that may also be a list of such values.
LIST_PARAMS = ("MediaUrl", "StatusCallbackEvent")


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    return "an object" if isinstance(value, Mapping) else "a list"


def _is_text(value: Any) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def types(raw: Mapping[str, Any], params: Mapping[str, Any], *, many: bool = False) -> None:
    """INVALID_INPUT for a value of the wrong type (an object or a list where Twilio
    takes text, say), before anything else is checked or sent: ``str()`` of it would
    reach Twilio as Python text. ``many``: ``To`` may be a list (send_to_many)."""
    for name in TEXT_PARAMS + LIST_PARAMS + ("To",):
        value = params.get(name)
        if value is None or _is_text(value):
            continue
        if isinstance(value, list) and (name in LIST_PARAMS or (many and name == "To")):
            if all(_is_text(v) for v in value):
                continue
            raise invalid(raw, name, "must be a list of text values")
        raise invalid(raw, name, f"must be text, not {_kind(value)}")
    metadata = params.get("metadata")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise invalid(raw, "metadata", "must be an object")


def source_name(raw: Any, fallback: str) -> str:
    """The task parameter a logic parameter comes from, to name it in errors."""
    match = _SOURCE.match(raw) if isinstance(raw, str) else None
    return match.group(1) if match else fallback


def blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value == []


def missing(raw: Mapping[str, Any], name: str) -> LogicFailure:
    field = source_name(raw.get(name), name)
    return LogicFailure(
        {
            "error": "MISSING_INPUT",
            "code": "MISSING_INPUT",
            "field": field,
            "message": f"{field} is required",
        }
    )


def invalid(raw: Mapping[str, Any], name: str, why: str) -> LogicFailure:
    field = source_name(raw.get(name), name)
    return LogicFailure(
        {
            "error": "INVALID_INPUT",
            "code": "INVALID_INPUT",
            "field": field,
            "message": f"{field} {why}",
        }
    )


def is_phone(value: str) -> bool:
    if not _E164.match(value):
        return False
    try:
        return phonenumbers.is_possible_number(phonenumbers.parse(value, None))
    except phonenumbers.NumberParseException:
        return False


def credentials(
    settings: Settings, raw: Mapping[str, Any], params: Mapping[str, Any]
) -> Credentials:
    """Per task (AccountSid + AuthToken or ApiKeySid + ApiKeySecret), else the server's
    defaults (TWILIO_ACCOUNT_SID with TWILIO_AUTH_TOKEN or TWILIO_API_KEY/SECRET)."""
    account = params.get("AccountSid")
    if blank(account):
        account = settings.twilio_account_sid
    if blank(account):
        raise missing(raw, "AccountSid")
    account = str(account)
    if not SID["AccountSid"].match(account):
        raise invalid(raw, "AccountSid", "must be AC followed by 32 hex digits")
    key_sid, key_secret = params.get("ApiKeySid"), params.get("ApiKeySecret")
    if not blank(key_sid) or not blank(key_secret):
        if blank(key_sid):
            raise missing(raw, "ApiKeySid")
        if blank(key_secret):
            raise missing(raw, "ApiKeySecret")
        if not SID["ApiKeySid"].match(str(key_sid)):
            raise invalid(raw, "ApiKeySid", "must be SK followed by 32 hex digits")
        return Credentials(account, str(key_sid), str(key_secret))
    token = params.get("AuthToken")
    if blank(token) and account == settings.twilio_account_sid:
        if settings.twilio_auth_token:
            token = settings.twilio_auth_token
        elif settings.twilio_api_key and settings.twilio_api_secret:
            return Credentials(account, settings.twilio_api_key, settings.twilio_api_secret)
    if blank(token):
        raise missing(raw, "AuthToken")
    return Credentials(account, account, str(token))


def with_base_url(creds: Credentials, base_url: Any) -> Credentials:
    """The credentials aimed at the logic's own Twilio base URL (seed 002's ``urlString``:
    set by the process author, never by task data; checked at deploy)."""
    if base_url is None:
        return creds
    try:
        return dataclasses.replace(creds, base_url=api_base(str(base_url)))
    except ValueError as exc:
        raise LogicFailure(
            {"error": "MISSING_INPUT", "code": "MISSING_INPUT", "field": "base_url",
             "message": f"base_url: {exc}"}
        ) from exc  # fmt: skip


def sender(raw: Mapping[str, Any], params: Mapping[str, Any], form: dict[str, Any]) -> None:
    """``From`` (number, short code or alphanumeric ID) or ``MessagingServiceSid``."""
    number, service = params.get("From"), params.get("MessagingServiceSid")
    if blank(number) and blank(service):
        raise missing(raw, "From")
    if not blank(number):
        text = phones.e164(str(number)) or str(number)
        if not (is_phone(text) or _ALPHA_SENDER.match(text) or _SHORT_CODE.match(text)):
            raise invalid(raw, "From", "must be an E.164 number, short code or sender ID")
        form["From"] = text
    if not blank(service):
        if not SID["MessagingServiceSid"].match(str(service)):
            raise invalid(raw, "MessagingServiceSid", "must be MG followed by 32 hex digits")
        form["MessagingServiceSid"] = str(service)


def message_form(raw: Mapping[str, Any], params: Mapping[str, Any], *, mms: bool) -> dict[str, Any]:
    """The Messages create form: To, From/MessagingServiceSid, Body, MediaUrl, ValidityPeriod."""
    form: dict[str, Any] = {}
    to = params.get("To")
    if blank(to):
        raise missing(raw, "To")
    number = phones.e164(str(to))
    if number is None:
        raise invalid(raw, "To", "must be an E.164 number with '+' and country code")
    form["To"] = number
    sender(raw, params, form)
    body_and_media(raw, params, form, mms=mms)
    return form


def body_and_media(
    raw: Mapping[str, Any], params: Mapping[str, Any], form: dict[str, Any], *, mms: bool
) -> None:
    body = params.get("Body")
    media = params.get("MediaUrl")
    media_list = [] if blank(media) else (media if isinstance(media, list) else [media])
    if len(media_list) > MAX_MEDIA:
        raise invalid(raw, "MediaUrl", f"at most {MAX_MEDIA} media URLs")
    for url in media_list:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise invalid(raw, "MediaUrl", "each media URL must be http(s)")
    if mms and not media_list:
        raise missing(raw, "MediaUrl")
    if blank(body) and not media_list:
        raise missing(raw, "Body")
    if not blank(body):
        text = str(body)
        if len(text) > MAX_BODY:
            raise invalid(raw, "Body", f"must be 1-{MAX_BODY} characters, got {len(text)}")
        form["Body"] = text
    if media_list:
        form["MediaUrl"] = [str(u) for u in media_list]
    validity = params.get("ValidityPeriod")
    if not blank(validity):
        try:
            seconds = int(str(validity))
        except ValueError:
            seconds = 0
        if not 1 <= seconds <= 36000:
            raise invalid(raw, "ValidityPeriod", "must be 1-36000 seconds")
        form["ValidityPeriod"] = str(seconds)


def call_form(raw: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """The Calls create form: To, From, Url or ApplicationSid (or Twiml), Method,
    StatusCallbackEvent (repeated), Timeout."""
    form: dict[str, Any] = {}
    to, number = params.get("To"), params.get("From")
    if blank(to):
        raise missing(raw, "To")
    text = phones.e164(str(to)) or str(to)
    if not (is_phone(text) or text.startswith(("sip:", "client:"))):
        raise invalid(raw, "To", "must be an E.164 number, sip: URI or client: identity")
    form["To"] = text
    if blank(number):
        raise missing(raw, "From")
    # A Twilio number, a verified caller ID, or a client identity (seed 003).
    caller = phones.e164(str(number)) or str(number)
    if not (is_phone(caller) or caller.startswith("client:")):
        raise invalid(raw, "From", "must be an E.164 number or a client: identity")
    form["From"] = caller
    url, app, twiml = params.get("Url"), params.get("ApplicationSid"), params.get("Twiml")
    given = [
        n for n, v in (("Url", url), ("ApplicationSid", app), ("Twiml", twiml)) if not blank(v)
    ]
    if not given:
        raise missing(raw, "Url")
    if len(given) > 1:
        raise invalid(raw, given[1], f"give only one of Url, ApplicationSid, Twiml (got {given})")
    if not blank(url):
        if not str(url).startswith(("http://", "https://")):
            raise invalid(raw, "Url", "must be an http(s) URL")
        form["Url"] = str(url)
    if not blank(app):
        if not SID["ApplicationSid"].match(str(app)):
            raise invalid(raw, "ApplicationSid", "must be AP followed by 32 hex digits")
        form["ApplicationSid"] = str(app)
    if not blank(twiml):
        form["Twiml"] = str(twiml)
    method = params.get("Method")
    if not blank(method):
        if str(method).upper() not in ("GET", "POST"):
            raise invalid(raw, "Method", "must be GET or POST")
        form["Method"] = str(method).upper()
    events = params.get("StatusCallbackEvent")
    if not blank(events):
        items = events if isinstance(events, list) else str(events).replace(",", " ").split()
        bad = [e for e in items if e not in CALL_EVENTS]
        if bad or not items:
            raise invalid(raw, "StatusCallbackEvent", f"must be among {', '.join(CALL_EVENTS)}")
        form["StatusCallbackEvent"] = [str(e) for e in items]
    timeout = params.get("Timeout")
    if not blank(timeout):
        try:
            seconds = int(str(timeout))
        except ValueError:
            seconds = 0
        if not 5 <= seconds <= 600:
            raise invalid(raw, "Timeout", "must be 5-600 seconds")
        form["Timeout"] = str(seconds)
    return form


def recipients(raw: Mapping[str, Any], params: Mapping[str, Any]) -> list[str]:
    """``To`` as a list or a comma/space-separated string of E.164 numbers, deduplicated
    in order; every number is checked before anything is sent."""
    value = params.get("To")
    if blank(value):
        raise missing(raw, "To")
    if isinstance(value, list):
        items = [str(v) for v in value]
    else:
        text = str(value)
        # Commas or semicolons separate numbers typed with spaces; else spaces do too.
        items = re.split(r"[,;]" if re.search(r"[,;]", text) else r"\s+", text)
    numbers: list[str] = []
    for item in items:
        text = phones.e164(item) or item.strip()
        if not text:
            continue
        if not is_phone(text):
            raise invalid(raw, "To", f"has {text!r}, not an E.164 number with '+' and country code")
        if text not in numbers:
            numbers.append(text)
    if not numbers:
        raise missing(raw, "To")
    if len(numbers) > MAX_RECIPIENTS:
        raise invalid(raw, "To", f"has {len(numbers)} numbers; at most {MAX_RECIPIENTS}")
    return numbers
