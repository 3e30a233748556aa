"""The errors a request can be refused with, by what went wrong (not by HTTP status:
``http/errors.py`` maps each to its status code in one place). Each carries a stable
``code`` and a readable ``message``; nothing was changed when one is raised."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    def __init__(self, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            err["details"] = self.details
        return {"error": err}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"


class BadInput(ServiceError):
    """The request cannot be read (malformed JSON, text no database can store)."""


class Forbidden(ServiceError):
    """The request is not allowed (a callback not signed by the sending account)."""


class NotFound(ServiceError):
    """What the request names does not exist."""


class Conflict(ServiceError):
    """The request clashes with the current state (a taken ref, a task not waiting)."""


class TooLarge(ServiceError):
    """The request's data is over a size limit."""


class UnsupportedMedia(ServiceError):
    """The body is not in a format this endpoint reads."""


class Invalid(ServiceError):
    """The request is readable but its values are refused."""
