"""The Twilio simulator's list pages (``Page``/``PageSize``/``PageToken``) and the
``DateSent`` filters of Messages lists. Pure: nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlencode


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
