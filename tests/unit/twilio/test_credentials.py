"""Whose answers teach the engine a token or a sender (Credentials.answered_by_twilio)."""

from __future__ import annotations

import pytest

from orchestrator.twilio.credentials import Credentials


@pytest.mark.parametrize(
    ("base_url", "twilio"),
    [
        (None, True),  # the operator's ORCH_TWILIO_API_URL
        ("https://api.twilio.com", True),
        ("https://api.dublin.ie1.twilio.com", True),  # a regional edge
        ("http://api.twilio.com", False),  # not over TLS
        ("https://twilio.com.example.net", False),
        ("https://eviltwilio.com", False),
        ("http://127.0.0.1:8080", False),  # a test double
    ],
)
def test_only_twilios_own_domain_answers_for_twilio(base_url: str | None, twilio: bool) -> None:
    creds = Credentials("AC1", "AC1", "token", base_url=base_url)
    assert creds.answered_by_twilio is twilio
