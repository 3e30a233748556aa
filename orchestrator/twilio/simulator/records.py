"""The Twilio simulator's message and call records: their status lifecycles, callback
parameters and JSON, plus the outgoing caller ids. Pure: nothing here does I/O.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from orchestrator.twilio.errors import ASYNC_ERROR_MESSAGES

from .rules import (
    API_VERSION,
    CALL_OUTCOMES,
    MESSAGE_OUTCOMES,
    MESSAGING_SERVICE_SENDER,
    OutcomeRule,
)

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
            "error_message": ASYNC_ERROR_MESSAGES.get(code, "Unknown error") if code else None,
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
