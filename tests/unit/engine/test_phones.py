"""Phone number normalisation parses each distinct number once (engine/phones.py): the
parse is slow and every task and SMS normalises the same few numbers again."""

from __future__ import annotations

import phonenumbers
import pytest

from orchestrator.engine import phones


@pytest.mark.parametrize(
    ("typed", "expected"),
    [("+1 (555) 123-0042", "+15551230042"), ("+1 555", None), ("+999 555 123", None)],
)
def test_a_number_is_parsed_once_with_the_same_answer(
    typed: str, expected: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    phones._parsed.cache_clear()
    parse = phonenumbers.parse
    calls: list[str] = []

    def counting(text: str, region: str | None) -> phonenumbers.PhoneNumber:
        calls.append(text)
        return parse(text, region)

    monkeypatch.setattr(phonenumbers, "parse", counting)
    assert [phones.e164(typed) for _ in range(3)] == [expected] * 3
    assert phones.e164(f"  {typed} ") == expected  # the same number, typed with spaces
    assert calls == [typed.strip()]
    assert phones.normalised(f"{typed}, {typed}") == ",".join([expected or typed] * 2)
    assert calls == [typed.strip()]
