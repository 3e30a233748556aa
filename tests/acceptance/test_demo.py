"""``orchestrator demo`` (README's first command) ends every SMS in a final node."""

from __future__ import annotations

import pytest

from orchestrator.config import Settings
from orchestrator.demo import CASES, run_demo


def test_demo_ends_each_case_in_success_or_escalation(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_demo(Settings(database_url=sqlite_url)) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.split("  ")[0] in {c[0] for c in CASES}]
    assert len(rows) == len(CASES)
    assert sum(" success " in r for r in rows) == 2
    assert sum(" escalation " in r for r in rows) == len(CASES) - 2
    assert "21211" in out and "https://www.twilio.com/docs/errors/21211" in out
    assert "30003" in out and "MISSING_INPUT" in out and "CALLBACK_TIMEOUT" in out
    # Two-way SMS: the simulator answers the ask, and a STOP stops the next send.
    asked = next(line for line in out.splitlines() if line.startswith("ask, the recipient"))
    assert " success " in asked and " Replied " in asked and asked.endswith(" YES")
    stopped = next(line for line in out.splitlines() if line.startswith("STOP texted"))
    assert " escalation " in stopped and " OPTED_OUT " in stopped
