"""The Twilio simulator's outcome rules, validation and error bodies.

Kept apart from ``simulator.py`` (the server, its tasks and HTTP) so the tables can be
read, and unit-tested, without starting anything; nothing here does I/O. Facts come from
the Twilio fact sheet (``/work/shared/reference/twilio.md`` §1, §2, §3, §5); where a code or
text is our own guess it says so. The records and their lifecycles are in
``simulator/records.py``, list paging and date filters in ``simulator/paging.py``. The
codes' texts are the client's own table (``twilio/errors.py``): one table for both.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.twilio.errors import API_ERROR_ANSWERS

API_VERSION = "2010-04-01"
MORE_INFO = "https://www.twilio.com/docs/errors/{code}"
E164 = re.compile(r"^\+[1-9][0-9]{1,14}\Z")
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


def _fail(status: int, code: int, to: str = "", from_: str = "") -> SimError:
    return SimError(status, code, API_ERROR_ANSWERS[code].format(to=to, from_=from_))


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
