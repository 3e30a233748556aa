"""Input checks made before any Twilio request (twilio/inputs.py)."""

from __future__ import annotations

import pytest

from orchestrator.twilio import inputs as twilio_input


@pytest.mark.parametrize("value", ["+15551230001", "+442071838750"])
def test_e164_numbers_are_phones(value: str) -> None:
    assert twilio_input.is_phone(value)


@pytest.mark.parametrize(
    "value",
    # A trailing newline once passed: `$` matches before it, so it would have reached
    # Twilio inside the To parameter.
    ["+15551230001\n", "15551230001", "+0123", "+1555123000１", ""],
)
def test_anything_else_is_not(value: str) -> None:
    assert not twilio_input.is_phone(value)
