"""Message bodies from template files beside the processes (issue 12 item 7, seed 004):
rendered in the sandbox; a missing, unreadable or escaping name is TEMPLATE_READ_ERROR
and nothing is sent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from stack import FROM, Stack, running_stack

from orchestrator.engine.templates import TemplateError
from orchestrator.twilio import template_files
from orchestrator.twilio.template_files import read_template

METADATA = {"fullName": {"firstName": "Ada", "lastName": "Lovelace"}, "date": "1 May"}
TEXT = "Hi Ada, a reminder of your appointment on 1 May. Reply STOP to stop these messages."


@pytest.fixture
def stack(db_url: str) -> Iterator[Stack]:
    with running_stack(db_url) as s:
        yield s


def _bodies(stack: Stack) -> list[str]:
    messages: list[dict[str, Any]] = httpx.get(f"{stack.sim}/_sim/messages").json()
    return [m["body"] for m in messages]


def test_shipped_template_is_the_body(stack: Stack) -> None:
    one = stack.sms(
        "+15551230001", body="", BodyTemplate="appointment-reminder.txt", metadata=METADATA
    )
    many = stack.create(
        {
            "smsTo": "+15551230002,+15551230003",
            "smsFrom": FROM,
            "smsTemplate": "appointment-reminder.txt",
            "metadata": METADATA,
        },
        process="send-to-many",
    )
    assert stack.wait(one["task_id"])["outcome"] == "success"
    assert stack.wait(many["task_id"])["outcome"] == "success"
    assert _bodies(stack) == [TEXT] * 3


@pytest.mark.parametrize(
    "name", ["no-such.txt", "../sending-sms.yaml", "/etc/passwd", "..", ".hidden", "a/b.txt"]
)
def test_missing_or_escaping_template_is_a_read_error(stack: Stack, name: str) -> None:
    task = stack.sms("+15551230001", body="", BodyTemplate=name, metadata=METADATA)
    done = stack.wait(task["task_id"])
    assert (done["outcome"], done["data"]["error"]) == ("escalation", "TEMPLATE_READ_ERROR")
    assert stack.sim_stats()["requests"] == 0


def test_unreadable_template_and_the_lookup(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "ok.txt").write_text("Hello {{ name }}")
    (tmp_path / "templates" / "latin1.txt").write_bytes(b"caf\xe9")
    (tmp_path / "templates" / "dir.txt").mkdir()
    (tmp_path / "secret.txt").write_text("outside")
    assert read_template(tmp_path, "ok.txt") == "Hello {{ name }}"
    for name in ("latin1.txt", "dir.txt", "../secret.txt", "nope.txt"):
        with pytest.raises(TemplateError) as caught:
            read_template(tmp_path, name)
        assert caught.value.error == "TEMPLATE_READ_ERROR", name
    # A symlink out of the directory is refused too.
    (tmp_path / "templates" / "link.txt").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(TemplateError):
        read_template(tmp_path, "link.txt")


def test_template_syntax_is_sandboxed(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "evil.txt").write_text("{{ ''.__class__.__mro__ }}")
    (tmp_path / "templates" / "inc.txt").write_text("{% include '/etc/passwd' %}")
    monkeypatch.setattr(template_files, "shipped_processes_dir", lambda: tmp_path)
    for name in ("evil.txt", "inc.txt"):
        done = stack.wait(stack.sms("+15551230001", body="", BodyTemplate=name)["task_id"])
        assert done["outcome"] == "escalation"
        assert done["data"]["error"].startswith("TEMPLATE_"), done["data"]
    assert stack.sim_stats()["requests"] == 0
