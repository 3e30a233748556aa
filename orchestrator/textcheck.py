"""Text the databases cannot store: one rule for every string that reaches them.

PostgreSQL refuses the NUL character in text, and neither database can encode a lone
surrogate (``"\\ud800"``, which JSON's ``\\u`` escapes can produce) as UTF-8. Refs, ids,
names and every string in a JSON body are checked where requests are read, so such
input is a named 4xx (INVALID_INPUT) on both databases instead of a failed query.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

_BAD = re.compile("[\x00\ud800-\udfff]")


def problem(text: str) -> str | None:
    """What makes ``text`` unstorable, or None."""
    found = _BAD.search(text)
    if found is None:
        return None
    return "a NUL character" if found.group() == "\x00" else "a lone surrogate (\\ud800-\\udfff)"


def _strings(value: Any) -> Iterator[str]:
    stack = [value]
    while stack:  # iterative: nesting is bounded elsewhere, but no recursion is needed
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            for k, v in item.items():
                if isinstance(k, str):
                    yield k
                stack.append(v)
        elif isinstance(item, list):
            stack.extend(item)


def first_surrogate(value: Any) -> str | None:
    """A description of the first lone surrogate in any string (or key) of ``value``."""
    for text in _strings(value):
        if any("\ud800" <= c <= "\udfff" for c in text):
            return "a lone surrogate (\\ud800-\\udfff)"
    return None
