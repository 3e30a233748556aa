"""Who a Twilio request is made as (``Credentials``), and where to (``api_base``)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

API_VERSION = "2010-04-01"


@dataclass(frozen=True, repr=False)
class Credentials:
    """Account SID for the URL plus the Basic-auth pair (AC…/auth token or SK…/secret)."""

    account_sid: str
    username: str
    password: str
    # Another Twilio base URL for these requests (a logic's ``base_url``), else the client's.
    base_url: str | None = None

    def __post_init__(self) -> None:
        for name in ("account_sid", "username", "password"):
            if not getattr(self, name):
                raise ValueError(f"Credentials.{name} must not be empty")

    @classmethod
    def from_auth_token(cls, account_sid: str, auth_token: str) -> Credentials:
        return cls(account_sid=account_sid, username=account_sid, password=auth_token)

    def __repr__(self) -> str:
        where = f", base_url={self.base_url!r}" if self.base_url else ""
        return (
            f"Credentials(account_sid={self.account_sid!r}, username={self.username!r}, "
            f"password='***'{where})"
        )

    __str__ = __repr__

    @property
    def answered_by_twilio(self) -> bool:
        """Whether answers to these requests come from Twilio itself: the operator's
        Twilio URL, or a logic's ``base_url`` on Twilio's own domain (a regional edge).
        Only such an answer may teach which account sent a sid, or that a token is
        good: a process author's test double answers whatever it likes."""
        if self.base_url is None:
            return True
        parts = urlsplit(self.base_url)
        host = (parts.hostname or "").lower()
        return parts.scheme == "https" and (host == "twilio.com" or host.endswith(".twilio.com"))


def api_base(url: str) -> str:
    """A Twilio base URL as the client wants it (scheme, host, any prefix), also from the
    forms people copy from Twilio's docs: ``…/2010-04-01`` and ``…/2010-04-01/Accounts/``
    (seed 002's ``urlString``). ValueError for a blank or non-http(s) URL."""
    text = url.strip().rstrip("/")
    if not text:
        raise ValueError("the Twilio base URL is blank")
    for suffix in ("/Accounts", f"/{API_VERSION}"):
        if text.endswith(suffix):
            text = text[: -len(suffix)].rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise ValueError(f"{url!r} is not an http(s) URL")
    return text
