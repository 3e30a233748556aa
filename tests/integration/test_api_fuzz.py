"""Schemathesis fuzzes /api/v1 from its own OpenAPI document against a running server
(with its engine and the Twilio simulator), a bounded number of examples per operation:
no request may get a 5xx answer.

(Schemathesis' pytest integration, ``from_fixture``, does not run under pytest 9, so the
operations are walked here, each with its own hypothesis run.)"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from stack import running_stack
from test_api import WAITER

KEY = "schemathesis-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
# ORCH_FUZZ_SCALE=20 (say) runs a deeper search by hand; the suite stays bounded.
EXAMPLES = int(25 * float(os.environ.get("ORCH_FUZZ_SCALE", "1")))


def _fuzz(operation: Any, base_url: str) -> int:
    """Run one operation's examples; returns how many requests were sent."""
    sent = 0

    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    def no_server_error(case: Any) -> None:
        nonlocal sent
        response = case.call(base_url=base_url, headers=AUTH, timeout=10)
        sent += 1
        assert response.status_code < 500, (case.method, case.formatted_path, response.text)

    no_server_error()
    return sent


@pytest.mark.slow
def test_no_request_gets_a_server_error(db_url: str) -> None:
    with running_stack(db_url, api_keys=f"fuzz:{KEY}") as s:
        assert s.client.post("/api/v1/processes", json=WAITER, headers=AUTH).status_code == 201
        schema = schemathesis.openapi.from_url(f"{s.api}/api/v1/openapi.json", headers=AUTH)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 8
        sent = {op.label: _fuzz(op, s.api) for op in operations}
        assert all(sent.values()) and sum(sent.values()) >= 100, sent
