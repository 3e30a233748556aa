"""The Twilio simulator plays the other side of a conversation: it posts signed
incoming-message webhooks (``From`` = the person, ``To`` = our number) to the configured
``incoming_url``, as Twilio does when someone texts one of your numbers.

On request: ``POST /_sim/incoming`` with a JSON object ``{"From", "To", "Body",
"MediaUrl": [...], "url": optional override}``; the answer says what the receiver
answered (status and body, e.g. TwiML). By rule (``reply_rules``): a message created to
a recipient matching a rule's ``pattern`` (a regular expression searched in ``To``) and
reaching the handset (delivered or sent) is answered with the rule's ``body`` after
``delay`` seconds, e.g. ``{"pattern": "^\\+1555", "body": "YES", "delay": 1}`` or a STOP.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from ..signature import SIGNATURE_HEADER, compute_signature
from .rules import API_VERSION

USER_AGENT = "TwilioProxy/1.1"
MAX_MEDIA = 10
# Outcomes that put the message on the handset: only then does anyone reply.
REPLIED_OUTCOMES = frozenset({"delivered", "sent"})


@dataclass(frozen=True)
class ReplyRule:
    """The recipient of a message whose ``To`` matches ``pattern`` texts back ``body``
    ``delay`` seconds after the message was created."""

    pattern: str
    body: str = "YES"
    delay: float = 1.0

    def __post_init__(self) -> None:
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"bad pattern {self.pattern!r}: {exc}") from exc
        if not isinstance(self.body, str) or not 0 <= float(self.delay) <= 3600:
            raise ValueError("a reply rule needs a text body and a delay of 0-3600 seconds")


def coerce_reply_rules(value: object) -> list[ReplyRule]:
    if not isinstance(value, list):
        raise ValueError("reply_rules must be a list")
    try:
        return [ReplyRule(**item) if isinstance(item, dict) else ReplyRule(*item) for item in value]
    except TypeError as exc:
        raise ValueError(f"bad reply rule: {exc}") from exc


def incoming_params(
    account_sid: str, from_: str, to: str, body: str, media: Sequence[str] = ()
) -> dict[str, str]:
    """The form Twilio posts for a received SMS/MMS."""
    sid = ("MM" if media else "SM") + uuid.uuid4().hex
    params = {
        "ToCountry": "US",
        "SmsMessageSid": sid,
        "NumMedia": str(len(media)),
        "SmsSid": sid,
        "SmsStatus": "received",
        "Body": body,
        "To": to,
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": account_sid,
        "From": from_,
        "ApiVersion": API_VERSION,
    }
    for i, url in enumerate(media[:MAX_MEDIA]):
        params[f"MediaUrl{i}"] = url
        params[f"MediaContentType{i}"] = "image/jpeg"
    return params


class IncomingSender:
    """Posts incoming messages; ``log`` keeps the last 1000 (params and the answer)."""

    def __init__(self, config: Any, stats: dict[str, int]) -> None:
        self.config = config
        self.stats = stats
        self.log: deque[dict[str, Any]] = deque(maxlen=1000)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._http: httpx.AsyncClient | None = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(15.0, connect=5.0), headers={"User-Agent": USER_AGENT}
            )
        return self._http

    async def send(
        self, from_: str, to: str, body: str, media: Sequence[str] = (), url: str | None = None
    ) -> dict[str, Any]:
        """Post one incoming message now; what the receiver answered."""
        target = url or self.config.incoming_url
        if not target:
            raise ValueError("no incoming_url configured (POST /_sim/config) and no url given")
        params = incoming_params(self.config.account_sid, from_, to, body, media)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            SIGNATURE_HEADER: compute_signature(target, params, self.config.auth_token),
        }
        entry: dict[str, Any] = {"url": target, "params": params}
        try:
            response = await self._client().post(target, data=params, headers=headers)
            entry.update(status=response.status_code, response=response.text[:2000])
        except httpx.HTTPError as exc:
            entry.update(status=None, response=type(exc).__name__)
        self.log.append(entry)
        ok = isinstance(entry["status"], int) and 200 <= entry["status"] < 300
        self.stats["incoming_sent" if ok else "incoming_failed"] += 1
        return {
            "sid": params["MessageSid"],
            "status": entry["status"],
            "response": entry["response"],
        }

    def after_create(self, to: str, from_: str | None, outcome: str) -> None:
        """Schedule the replies the rules give a message just created."""
        if not from_ or outcome not in REPLIED_OUTCOMES:
            return
        for rule in self.config.reply_rules:
            if re.search(rule.pattern, to):
                self._spawn(self._reply_later(rule, to, from_))

    async def _reply_later(self, rule: ReplyRule, person: str, ours: str) -> None:
        await asyncio.sleep(float(rule.delay))
        try:
            await self.send(person, ours, rule.body)
        except ValueError:
            self.stats["incoming_failed"] += 1

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def cancel_tasks(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        await self.cancel_tasks()
        if self._http is not None:
            await self._http.aclose()
            self._http = None


def parse_request(body: object) -> tuple[str, str, str, list[str], str | None]:
    """(From, To, Body, media, url) of a ``POST /_sim/incoming`` body; ValueError if bad."""
    if not isinstance(body, Mapping):
        raise ValueError("expected a JSON object")
    from_, to, text = body.get("From"), body.get("To"), body.get("Body", "")
    if not isinstance(from_, str) or not from_ or not isinstance(to, str) or not to:
        raise ValueError("From and To are required strings")
    if not isinstance(text, str):
        raise ValueError("Body must be a string")
    media = body.get("MediaUrl", [])
    if isinstance(media, str):
        media = [media]
    if not isinstance(media, list) or not all(isinstance(m, str) for m in media):
        raise ValueError("MediaUrl must be a string or a list of strings")
    url = body.get("url")
    if url is not None and not isinstance(url, str):
        raise ValueError("url must be a string")
    return from_, to, text, media[:MAX_MEDIA], url
