"""The one place domain errors (``services/errors.py``) get their HTTP status codes."""

from __future__ import annotations

from orchestrator.services.errors import (
    BadInput,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    ServiceError,
    TooLarge,
    UnsupportedMedia,
)

STATUS: dict[type[ServiceError], int] = {
    BadInput: 400,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    TooLarge: 413,
    UnsupportedMedia: 415,
    Invalid: 422,
}


def http_status(err: ServiceError) -> int:
    for cls in type(err).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 422
