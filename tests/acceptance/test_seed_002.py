"""Seed 002 (issue 12 item 6): a twilio logic's own ``base_url`` (the activity's
``urlString``, also in its ``…/2010-04-01/Accounts/`` form; never from task data), and the
activity's result names ``statusCode``, ``status``, ``message``, ``failedNumbers``."""

from __future__ import annotations

from typing import Any

import pytest
from stack import FROM, running_stack

from orchestrator.twilio.credentials import api_base


def sender(slug: str, base_url: str | None, action: str = "send_sms") -> dict[str, Any]:
    logic: dict[str, Any] = {
        "type": "twilio",
        "action": action,
        "params": {
            "To": "{{ to | default(none) }}",
            "From": "{{ from | default(none) }}",
            "Body": "{{ body | default(none) }}",
            "AuthToken": "{{ token | default(none) }}",
        },
    }
    if action == "list_caller_ids":
        logic["params"] = {}
    if base_url is not None:
        logic["base_url"] = base_url
    return {
        "slug": slug,
        "title": slug,
        "nodes": {
            "start": {"kind": "start", "logics": [{"type": "go", "to": "send"}]},
            "send": {"on_error": "failed", "logics": [logic, {"type": "go", "to": "ok"}]},
            "ok": {"kind": "success"},
            "failed": {"kind": "escalation"},
        },
    }


def test_api_base_forms() -> None:
    for url in (
        "https://api.twilio.com",
        "https://api.twilio.com/",
        "https://api.twilio.com/2010-04-01",
        "https://api.twilio.com/2010-04-01/Accounts/",
        "https://api.twilio.com/2010-04-01/Accounts",
    ):
        assert api_base(url) == "https://api.twilio.com"
    assert (
        api_base("http://127.0.0.1:8010/edge/2010-04-01/Accounts/") == "http://127.0.0.1:8010/edge"
    )
    for bad in ("", "api.twilio.com", "ftp://x/2010-04-01/Accounts/"):
        with pytest.raises(ValueError):
            api_base(bad)


def test_per_logic_base_url_and_result_names(db_url: str) -> None:
    # The server's own Twilio URL leads nowhere: only the logic's base_url can deliver.
    with running_stack(db_url, twilio_api_url="http://127.0.0.1:9", twilio_max_attempts=1) as s:
        s.deploy(
            sender("via-logic", f"{s.sim}/2010-04-01/Accounts/"),
            sender("via-server", None),
            sender("recipients", f"{s.sim}/2010-04-01", action="list_caller_ids"),
        )
        sms = {"to": "+15551230001", "from": FROM, "body": "hi"}
        ok = s.run("via-logic", sms)
        assert ok["outcome"] == "success", ok
        assert ok["data"]["sid"].startswith("SM")
        assert (ok["data"]["statusCode"], ok["data"]["status"]) == ("201", "queued")
        assert ok["data"]["failedNumbers"] == ""
        cases: list[tuple[str, dict[str, Any], str, str]] = [
            ("via-server", sms, "901", "+15551230001"),  # Twilio unreachable
            ("via-logic", {**sms, "body": None}, "501", "+15551230001"),
            ("via-logic", {**sms, "to": None}, "502", ""),
            ("via-logic", {**sms, "from": None}, "503", "+15551230001"),
            ("via-logic", {**sms, "to": "+15005550001"}, "400", "+15005550001"),  # 21211
            ("via-logic", {**sms, "token": "wrong"}, "401", "+15551230001"),
            ("via-logic", {**sms, "body": {"a": 1}}, "400", "+15551230001"),
        ]
        for slug, data, code, failed in cases:
            done = s.run(slug, data)
            assert done["outcome"] == "escalation"
            got = (done["data"]["statusCode"], done["data"]["failedNumbers"])
            assert got == (code, failed), (slug, data, done["data"])
            assert done["data"]["message"] and "status" not in done["data"]
        listed = s.run("recipients", {})
        assert listed["data"]["statusCode"] == "200"
        assert listed["data"]["message"] == listed["data"]["recipients"] != ""


@pytest.mark.parametrize("url", ["{{ twilio_url }}", "http://{% if 1 %}x{% endif %}", "nope", 7])
def test_base_url_is_never_a_template(db_url: str, url: Any) -> None:
    with running_stack(db_url) as s:
        r = s.client.post("/api/v1/processes", json=[sender("bad", url)])
        assert r.status_code == 422, r.text
        assert "base_url" in r.text
