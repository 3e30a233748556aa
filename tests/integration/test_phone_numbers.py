"""Phone numbers as people type them (issue 12 item 9): ``+1 555 123 0001`` given to the
API, the console's New-task form or the CLI is stored and sent as E.164; a number without
its country code cannot be normalised and ends in INVALID_INPUT, nothing sent."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from stack import FROM, running_stack
from starlette.testclient import TestClient

from orchestrator.cli import main
from orchestrator.config import Settings
from orchestrator.engine.phones import e164, normalised
from orchestrator.http.app import create_app


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("+1 555 123 0001", "+15551230001"),
        ("+1 (555) 123-0001", "+15551230001"),
        ("+1.555.123.0001", "+15551230001"),
        (" +44 20 7946 0958 ", "+442079460958"),
        ("+15551230001", "+15551230001"),
        ("(555) 123-0001", None),  # no country code: not guessed
        ("555 123 0001", None),
        ("+1 555", None),
        ("12345", None),
        ("+1 555 123 0001 +1", None),
    ],
)
def test_e164(typed: str, expected: str | None) -> None:
    assert e164(typed) == expected


def test_lists_and_senders() -> None:
    assert normalised("+1 555 123 0001, +1 555 123 0002") == "+15551230001,+15551230002"
    assert normalised(["+1 555 123 0001", "MyShop"]) == ["+15551230001", "MyShop"]
    assert normalised("MyShop") == "MyShop"


def test_api_stores_and_sends_e164_and_refuses_what_cannot_be(db_url: str) -> None:
    with running_stack(db_url) as stack:
        typed = stack.sms("+1 555 123 0001", Number_from="+1 (500) 555-0006")
        local = stack.sms("(555) 123-0001")
        many = stack.create(
            {"smsTo": "+1 555 123 0002, +1 (555) 123-0003", "smsFrom": FROM, "smsBody": "x"},
            process="send-to-many",
        )
        done = stack.wait(typed["task_id"])
        assert done["outcome"] == "success", done
        assert (done["data"]["Number_to"], done["data"]["Number_from"]) == (
            "+15551230001",
            "+15005550006",
        )
        refused = stack.wait(local["task_id"])
        assert (refused["data"]["error"], refused["data"]["field"]) == (
            "INVALID_INPUT",
            "Number_to",
        )
        assert stack.wait(many["task_id"])["outcome"] == "success"
        sent: list[dict[str, Any]] = httpx.get(f"{stack.sim}/_sim/messages").json()
        assert sorted(m["to"] for m in sent) == ["+15551230001", "+15551230002", "+15551230003"]


def test_console_form_and_cli_store_e164(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    app = create_app(Settings(database_url=db_url, secret="s" * 32), run_engine=False)
    with TestClient(app, client=("127.0.0.1", 50000), follow_redirects=False) as c:
        form = c.get("/console/processes/sending-sms/new")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        r = c.post(
            "/console/processes/sending-sms/new",
            data={"csrf": csrf.group(1), "in_Number_to": "+1 555 123 0001", "in_Body": "x"},
        )
        assert r.status_code == 303, r.text
        task_id = r.headers["location"].rsplit("/", 1)[-1]
        assert c.get(f"/api/v1/tasks/{task_id}").json()["data"]["Number_to"] == "+15551230001"
    if db_url.startswith("sqlite"):
        data = json.dumps({"Number_to": "+1 (555) 123-0002", "Body": "x"})
        code = main(["--database-url", db_url, "task", "create", "sending-sms", "--data", data])
        out = capsys.readouterr().out
        assert code == 0 and json.loads(out)["data"]["Number_to"] == "+15551230002"
