"""The Twilio simulator's pure parts: outcome rules, validation, error bodies, paging, and
the message/call records with their status lifecycles and callback parameters.

Kept apart from ``simulator.py`` (the server, its tasks and HTTP) so the tables can be
read, and unit-tested, without starting anything; nothing here does I/O. Facts come from
the Twilio fact sheet (``/work/shared/reference/twilio.md`` §1, §2, §3, §5); where a code or
text is our own guess it says so.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs, urlencode

API_VERSION = "2010-04-01"
MORE_INFO = "https://www.twilio.com/docs/errors/{code}"
E164 = re.compile(r"^\+[1-9]\d{1,14}$")
# Sender Twilio "picks from the pool" when only MessagingServiceSid is given.
MESSAGING_SERVICE_SENDER = "+15005550006"

MESSAGE_OUTCOMES = frozenset({"delivered", "undelivered", "failed", "sent", "lost"})
CALL_OUTCOMES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})


@dataclass(frozen=True)
class OutcomeRule:
    """What happens to a message (or call) whose ``To`` ends with ``to_suffix``.

    Message statuses: ``delivered``, ``undelivered``, ``failed``, ``sent`` (the carrier
    never sends a DLR: only a ``sent`` callback) and ``lost`` (the message reaches ``sent``
    but no callback is ever posted). Call statuses: ``completed``, ``busy``, ``no-answer``,
    ``failed``, ``canceled``.
    """

    to_suffix: str
    status: str
    error_code: int | None = None

    def __post_init__(self) -> None:
        if self.status not in MESSAGE_OUTCOMES | CALL_OUTCOMES:
            raise ValueError(f"unknown outcome status {self.status!r}")


DEFAULT_RULES: tuple[OutcomeRule, ...] = (
    OutcomeRule("3003", "undelivered", 30003),
    OutcomeRule("3005", "undelivered", 30005),
    OutcomeRule("3008", "failed", 30008),
    OutcomeRule("0000", "lost", None),
)
DEFAULT_CALL_RULES: tuple[OutcomeRule, ...] = (
    OutcomeRule("4000", "no-answer", None),
    OutcomeRule("4001", "busy", None),
)


def match_rule(rules: Sequence[OutcomeRule], to: str, default: str) -> OutcomeRule:
    """Longest matching suffix wins; on a tie the later rule wins, so appending overrides."""
    best: OutcomeRule | None = None
    for rule in rules:
        if to.endswith(rule.to_suffix) and (
            best is None or len(rule.to_suffix) >= len(best.to_suffix)
        ):
            best = rule
    return best or OutcomeRule("", default, None)


# Titles of the asynchronous (callback) error codes, for the Message's error_message.
ASYNC_ERROR_TITLES: dict[int, str] = {
    30001: "Queue overflow",
    30003: "Unreachable destination handset",
    30004: "Message blocked",
    30005: "Unknown destination handset",
    30006: "Landline or unreachable carrier",
    30007: "Message filtered",
    30008: "Unknown error",
}


class SimError(Exception):
    """A Twilio API error answer: HTTP status, Twilio code and message."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def payload(self) -> dict[str, Any]:
        return error_payload(self.status, self.code, self.message)


def error_payload(status: int, code: int, message: str) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": MORE_INFO.format(code=code),
        "status": status,
    }


# Test-credential magic numbers [fact sheet §5]: number -> (HTTP status, code).
MESSAGE_FROM_MAGIC: dict[str, tuple[int, int]] = {
    "+15005550001": (400, 21212),
    "+15005550007": (400, 21606),
    "+15005550008": (429, 21611),
}
MESSAGE_TO_MAGIC: dict[str, tuple[int, int]] = {
    "+15005550001": (400, 21211),
    "+15005550002": (400, 21612),
    "+15005550003": (400, 21408),
    "+15005550004": (400, 21610),
    "+15005550009": (400, 21614),
}
CALL_FROM_MAGIC: dict[str, tuple[int, int]] = {"+15005550001": (400, 21212)}
CALL_TO_MAGIC: dict[str, tuple[int, int]] = {
    "+15005550001": (400, 21217),
    "+15005550002": (400, 21214),
    "+15005550003": (400, 21215),
    "+15005550004": (400, 21216),
}

# Texts modelled on Twilio's; clients must match on the code, never on the text.
ERROR_TEXT: dict[int, str] = {
    21201: "No 'To' number is specified",
    21205: "Url parameter is required.",
    21211: "The 'To' number {to} is not a valid phone number.",
    21212: "The 'From' number {from_} is not a valid phone number, shortcode, or "
    "alphanumeric sender ID.",
    21213: "No 'From' number is specified",
    21214: "'To' phone number cannot be reached",
    21215: "Account not authorized to call {to}. Perhaps you need to enable some "
    "international permissions.",
    21216: "Call blocked by Twilio blocklist",
    21217: "Phone number {to} does not appear to be valid",
    21408: "Permission to send an SMS has not been enabled for the region indicated by "
    "the 'To' number: {to}.",
    21602: "Message body is required.",
    21603: "A 'From' or 'MessagingServiceSid' parameter is required to send a message.",
    21604: "A 'To' phone number is required.",
    21606: "The From phone number {from_} is not a valid, SMS-capable inbound phone "
    "number or short code for your account.",
    21610: "Attempt to send to unsubscribed recipient",
    21611: "This 'From' number has exceeded the maximum number of queued messages",
    21612: "The 'To' phone number: {to}, is not currently reachable using the 'From' "
    "phone number: {from_} via SMS.",
    21614: "'To' number {to} is not a valid mobile number",
    21617: "The concatenated message body exceeds the 1600 character limit.",
    # 21623 is our reading of Twilio's dictionary ("Number of media files exceeds
    # allowed limit"); not verified against the live API.
    21623: "Number of media files exceeds allowed limit",
}


def _fail(status: int, code: int, to: str = "", from_: str = "") -> SimError:
    return SimError(status, code, ERROR_TEXT[code].format(to=to, from_=from_))


Form = Mapping[str, Sequence[str]]


def first(form: Form, name: str) -> str:
    """First non-empty value of ``name``, or ``""`` (Twilio treats ``To=`` as missing)."""
    return next((value for value in form.get(name, ()) if value), "")


def _strip_channel(address: str) -> str:
    """``whatsapp:+1…`` -> ``+1…``: channel prefixes wrap an E.164 number."""
    prefix, sep, rest = address.partition(":")
    return rest if sep and prefix.isalpha() else address


def validate_message(form: Form) -> None:
    """Raise :class:`SimError` as Twilio would for a Messages create; order matters."""
    to, from_ = first(form, "To"), first(form, "From")
    if not to:
        raise _fail(400, 21604)
    if not from_ and not first(form, "MessagingServiceSid"):
        raise _fail(400, 21603)
    body = first(form, "Body")
    media = [url for url in form.get("MediaUrl", ()) if url]
    if not body and not media:
        raise _fail(400, 21602)
    if len(body) > 1600:
        raise _fail(400, 21617)
    if len(media) > 10:
        raise _fail(400, 21623)
    # Magic From is checked first: Twilio's test-credential tables assume a valid From.
    for table, number in ((MESSAGE_FROM_MAGIC, from_), (MESSAGE_TO_MAGIC, to)):
        if number in table:
            status, code = table[number]
            raise _fail(status, code, to, from_)
    if not E164.match(_strip_channel(to)):
        raise _fail(400, 21211, to, from_)


def validate_call(form: Form) -> None:
    """Raise :class:`SimError` as Twilio would for a Calls create."""
    to, from_ = first(form, "To"), first(form, "From")
    if not to:
        raise _fail(400, 21201)
    if not from_:
        raise _fail(400, 21213)
    if not (first(form, "Url") or first(form, "Twiml") or first(form, "ApplicationSid")):
        raise _fail(400, 21205)
    for table, number in ((CALL_FROM_MAGIC, from_), (CALL_TO_MAGIC, to)):
        if number in table:
            status, code = table[number]
            raise _fail(status, code, to, from_)
    if not (E164.match(from_) or from_.startswith("client:")):
        raise _fail(400, 21212, to, from_)
    # Voice also dials SIP URIs and Twilio Client identities, not only numbers.
    if not (E164.match(to) or to.startswith(("sip:", "client:"))):
        raise _fail(400, 21217, to, from_)


_GSM7 = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXT = "^{}\\[~]|€\f"


def num_segments(body: str) -> int:
    """SMS segments: GSM-7 160/153 septets, else UCS-2 70/67 UTF-16 units."""
    if all(c in _GSM7 or c in _GSM7_EXT for c in body):
        units, single, multi = sum(2 if c in _GSM7_EXT else 1 for c in body), 160, 153
    else:
        units, single, multi = len(body.encode("utf-16-le")) // 2, 70, 67
    return 1 if units <= single else math.ceil(units / multi)


def rfc2822(moment: datetime | None) -> str | None:
    """Twilio's date format, e.g. ``Thu, 24 Aug 2023 05:01:45 +0000``."""
    return format_datetime(moment.replace(microsecond=0)) if moment else None


def new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def parse_paging(query: Mapping[str, str], default_size: int) -> tuple[int, int]:
    """(page, page_size) from ``Page``/``PageSize``/``PageToken`` (``PA<offset>``)."""
    size = _int(query.get("PageSize"), default_size)
    size = min(max(size, 1), 1000)
    page = max(_int(query.get("Page"), 0), 0)
    token = query.get("PageToken", "")
    if token.startswith("PA") and token[2:].isdigit():
        # The cursor is authoritative: Twilio says Page is "simply for client state".
        page = int(token[2:]) // size
    return page, size


def _int(raw: str | None, default: int) -> int:
    try:
        return int(raw) if raw is not None else default
    except ValueError:
        return default


def page_payload(
    key: str,
    items: Sequence[dict[str, Any]],
    *,
    path: str,
    filters: Mapping[str, str],
    page: int,
    page_size: int,
) -> dict[str, Any]:
    """A Twilio 2010 list page: exactly one list key plus the paging meta keys."""

    def uri(number: int) -> str:
        params = {**filters, "PageSize": str(page_size), "Page": str(number)}
        if number > 0:
            params["PageToken"] = f"PA{number * page_size}"
        return f"{path}?{urlencode(params)}"

    start = page * page_size
    chunk = list(items[start : start + page_size])
    return {
        key: chunk,
        "first_page_uri": uri(0),
        "next_page_uri": uri(page + 1) if start + page_size < len(items) else None,
        "previous_page_uri": uri(page - 1) if page > 0 else None,
        "page": page,
        "page_size": page_size,
        "start": start,
        "end": start + max(len(chunk) - 1, 0),
        "uri": uri(page),
    }


def date_filter(query: Mapping[str, str]) -> list[tuple[str, datetime | date]]:
    """``DateSent`` (same day), ``DateSent<`` / ``DateSent>`` (on or before / after).

    Values are ``YYYY-MM-DD`` or, as twilio-python sends them, ``YYYY-MM-DDTHH:MM:SSZ``.
    Raises ``ValueError`` on anything else.
    """
    found: list[tuple[str, datetime | date]] = []
    for op, name in (("=", "DateSent"), ("<", "DateSent<"), (">", "DateSent>")):
        raw = query.get(name)
        if not raw:
            continue
        if len(raw) == 10 or op == "=":
            found.append((op, date.fromisoformat(raw[:10])))
        else:
            moment = datetime.fromisoformat(raw)
            # A bound without an offset is taken as UTC, like Twilio's own dates.
            found.append((op, moment if moment.tzinfo else moment.replace(tzinfo=UTC)))
    return found


def date_matches(moment: datetime, filters: Sequence[tuple[str, datetime | date]]) -> bool:
    for op, bound in filters:
        if isinstance(bound, datetime):  # check first: a datetime is also a date
            sign = (moment > bound) - (moment < bound)
        else:
            day = moment.date()
            sign = (day > bound) - (day < bound)
        if (op == "=" and sign) or (op == "<" and sign > 0) or (op == ">" and sign < 0):
            return False
    return True


# -- records and their lifecycles ------------------------------------------------

CALL_SECONDS = 4  # simulated talk time of a completed call
_SIP_CODES = {"completed": "200", "busy": "486", "no-answer": "487", "failed": "500"}
_MESSAGE_RANK = {"queued": 0, "sent": 1, "delivered": 2, "undelivered": 2, "failed": 2}
_CALL_RANK = {"queued": 0, "initiated": 1, "ringing": 2, "in-progress": 3}  # terminal: 4
_CALL_EVENT = {"initiated": "initiated", "ringing": "ringing", "in-progress": "answered"}
_CALLER_ID_DATE = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Step:
    """One status change; ``post`` says whether it produces a callback."""

    status: str
    error_code: int | None = None
    post: bool = True
    sequence: int = 0  # the call callback's SequenceNumber


@dataclass
class MessageRecord:
    sid: str
    account_sid: str
    to: str
    from_: str | None
    body: str
    messaging_service_sid: str | None
    media_urls: list[str]
    status_callback: str | None
    status: str = "queued"
    error_code: int | None = None
    validity_period: str | None = None  # not in Twilio's Message JSON; /_sim/messages shows it
    date_created: datetime = field(default_factory=_now)
    date_updated: datetime = field(default_factory=_now)
    date_sent: datetime | None = None

    def advance(self, step: Step) -> None:
        # Never downgrade: a reordered, late 'sent' must not undo 'delivered'.
        if _MESSAGE_RANK[step.status] <= _MESSAGE_RANK[self.status]:
            return
        now = _now()
        self.status, self.error_code, self.date_updated = step.status, step.error_code, now
        self.from_ = self.from_ or MESSAGING_SERVICE_SENDER
        if step.status != "failed" and self.date_sent is None:
            self.date_sent = now

    def callback_params(self, step: Step) -> dict[str, str]:
        params = {
            "AccountSid": self.account_sid,
            "From": self.from_ or MESSAGING_SERVICE_SENDER,
            "To": self.to,
            "MessageSid": self.sid,
            "SmsSid": self.sid,
            "MessageStatus": step.status,
            "SmsStatus": step.status,
            "ApiVersion": API_VERSION,
        }
        if step.error_code is not None:
            params["ErrorCode"] = str(step.error_code)
        if self.messaging_service_sid:
            params["MessagingServiceSid"] = self.messaging_service_sid
        if step.status in ("delivered", "undelivered"):
            # Carrier DLR time, YYMMDDhhmm without zone, as Twilio forwards it.
            params["RawDlrDoneDate"] = _now().strftime("%y%m%d%H%M")
        return params

    def to_json(self) -> dict[str, Any]:
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{self.sid}"
        code = self.error_code
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": self.body,
            "date_created": rfc2822(self.date_created),
            "date_sent": rfc2822(self.date_sent),
            "date_updated": rfc2822(self.date_updated),
            "direction": "outbound-api",
            "error_code": code,
            "error_message": ASYNC_ERROR_TITLES.get(code, "Unknown error") if code else None,
            "from": self.from_,
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": str(len(self.media_urls)),
            "num_segments": str(num_segments(self.body)),
            "price": None,
            "price_unit": "USD",
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {"media": f"{uri}/Media.json", "feedback": f"{uri}/Feedback.json"},
            "to": self.to,
            "uri": f"{uri}.json",
        }


@dataclass
class CallRecord:
    sid: str
    account_sid: str
    to: str
    from_: str
    status_callback: str | None
    status: str = "queued"
    date_created: datetime = field(default_factory=_now)
    date_updated: datetime = field(default_factory=_now)
    start_time: datetime | None = None
    end_time: datetime | None = None
    duration: int | None = None

    def advance(self, step: Step) -> None:
        if _CALL_RANK.get(step.status, 4) <= _CALL_RANK.get(self.status, 4):
            return
        now = _now()
        self.status, self.date_updated = step.status, now
        if step.status == "in-progress" or (step.status == "completed" and not self.start_time):
            self.start_time = now
        if step.status in CALL_OUTCOMES:
            self.end_time = now
            self.duration = CALL_SECONDS if step.status == "completed" else 0

    def callback_params(self, step: Step) -> dict[str, str]:
        params = {
            "CallSid": self.sid,
            "AccountSid": self.account_sid,
            "From": self.from_,
            "To": self.to,
            "Caller": self.from_,
            "Called": self.to,
            "CallStatus": step.status,
            "Direction": "outbound-api",
            "ApiVersion": API_VERSION,
            "CallbackSource": "call-progress-events",
            "SequenceNumber": str(step.sequence),
            "Timestamp": rfc2822(_now()) or "",
        }
        if step.status in CALL_OUTCOMES:
            seconds = CALL_SECONDS if step.status == "completed" else 0
            params["CallDuration"] = str(seconds)
            params["SipResponseCode"] = _SIP_CODES.get(step.status, "487")
            if step.status == "completed":
                params["Duration"] = str(math.ceil(seconds / 60))  # minutes
        return params

    def to_json(self) -> dict[str, Any]:
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{self.sid}"
        return {
            "sid": self.sid,
            "date_created": rfc2822(self.date_created),
            "date_updated": rfc2822(self.date_updated),
            "parent_call_sid": None,
            "account_sid": self.account_sid,
            "to": self.to,
            "to_formatted": self.to,
            "from": self.from_,
            "from_formatted": self.from_,
            "phone_number_sid": None,
            "status": self.status,
            "start_time": rfc2822(self.start_time),
            "end_time": rfc2822(self.end_time),
            "duration": None if self.duration is None else str(self.duration),
            "price": None,
            "price_unit": "USD",
            "direction": "outbound-api",
            "answered_by": None,
            "api_version": API_VERSION,
            "forwarded_from": None,
            "group_sid": None,
            "caller_name": None,
            "queue_time": "0",
            "trunk_sid": None,
            "uri": f"{uri}.json",
            "subresource_uris": {
                name: f"{uri}/{name.title().replace('_', '')}.json"
                for name in ("notifications", "recordings", "events", "payments")
            },
        }


Record = MessageRecord | CallRecord


def message_steps(rule: OutcomeRule) -> list[Step]:
    if rule.status not in MESSAGE_OUTCOMES:
        raise ValueError(f"{rule!r} is not a message outcome")
    if rule.status == "lost":
        return [Step("sent", post=False)]
    if rule.status in ("failed", "sent"):
        return [Step(rule.status, rule.error_code)]
    return [Step("sent"), Step(rule.status, rule.error_code)]


def call_steps(rule: OutcomeRule, events: set[str]) -> list[Step]:
    if rule.status not in CALL_OUTCOMES:
        raise ValueError(f"{rule!r} is not a call outcome")
    if rule.status in ("failed", "canceled"):
        natural = [rule.status]
    elif rule.status == "completed":
        natural = ["initiated", "ringing", "in-progress", "completed"]
    else:
        natural = ["initiated", "ringing", rule.status]
    steps: list[Step] = []
    sequence = 0  # numbered in event order, whatever order they are posted in
    for status in natural:
        post = _CALL_EVENT.get(status, "completed") in events
        steps.append(Step(status, None, post, sequence))
        sequence += post
    return steps


def basic_auth(header: str) -> tuple[str, str]:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    user, _, password = decoded.partition(":")
    return user, password


def retry_count(fragment: str) -> int:
    """Twilio's ``#rc=N`` connection override (0–5); default one retry."""
    raw = parse_qs(fragment).get("rc", ["1"])[0]
    return min(max(int(raw), 0), 5) if raw.isdigit() else 1


def caller_id_json(account_sid: str, number: str) -> dict[str, Any]:
    # A stable sid per number, so pages agree with each other across requests.
    sid = "PN" + hashlib.sha256(number.encode()).hexdigest()[:32]
    date = rfc2822(_CALLER_ID_DATE)
    return {
        "sid": sid,
        "account_sid": account_sid,
        "friendly_name": number,
        "phone_number": number,
        "date_created": date,
        "date_updated": date,
        "uri": f"/{API_VERSION}/Accounts/{account_sid}/OutgoingCallerIds/{sid}.json",
    }


def _coerce_rules(value: object) -> list[OutcomeRule]:
    if not isinstance(value, list):
        raise ValueError("rules must be a list")
    try:
        return [
            OutcomeRule(**item) if isinstance(item, dict) else OutcomeRule(*item) for item in value
        ]
    except TypeError as exc:
        raise ValueError(f"bad rule: {exc}") from exc


def apply_config(config: Any, changes: object) -> None:
    """Type-checked, all-or-nothing update from a JSON object; ValueError if invalid."""
    if not isinstance(changes, dict):
        raise ValueError("expected a JSON object")
    names = {f.name for f in fields(config)}
    updates: dict[str, object] = {}
    for name, value in changes.items():
        if name not in names:
            raise ValueError(f"unknown config field {name!r}")
        current = getattr(config, name)
        if name in ("rules", "call_rules"):
            value = _coerce_rules(value)
        elif name == "fail_next":
            if not (
                isinstance(value, list)
                and all(
                    isinstance(v, list) and len(v) == 2 and all(isinstance(i, int) for i in v)
                    for v in value
                )
            ):
                raise ValueError("fail_next must be a list of [status, code] pairs")
        elif name == "caller_ids":
            if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                raise ValueError("caller_ids must be a list of strings")
        elif isinstance(current, bool) or isinstance(value, bool):
            if type(value) is not type(current):
                raise ValueError(f"{name} must be {type(current).__name__}")
        elif isinstance(current, float) and isinstance(value, int | float):
            value = float(value)
        elif type(value) is not type(current):
            raise ValueError(f"{name} must be {type(current).__name__}")
        updates[name] = value
    for name, value in updates.items():
        setattr(config, name, value)
