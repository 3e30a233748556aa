"""Two-way SMS end to end (SPEC §10): incoming messages, Ask by SMS, opt-outs. Real
servers on 127.0.0.1 (the orchestrator and the Twilio simulator), on every database."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from stack import ACCOUNT, FROM, TOKEN, Stack, running_stack

from orchestrator.store.tables import callbacks
from orchestrator.twilio.signature import compute_signature
from orchestrator.twilio.simulator.incoming import incoming_params

PERSON = "+15551230001"


@pytest.fixture
def stack(db_url: str) -> Iterator[Stack]:
    with running_stack(db_url) as s:
        s.sim_config(incoming_url=incoming_url(s))
        yield s


def incoming_url(stack: Stack) -> str:
    view = stack.client.get("/api/v1/processes/incoming-sms").json()
    start = next(n for n in view["nodes"] if n["kind"] == "start")
    url: str = start["callback_urls"]["twilio"]
    return url


def post_signed(url: str, params: dict[str, str], token: str = TOKEN) -> httpx.Response:
    signature = compute_signature(url, params, token)
    return httpx.post(url, data=params, headers={"X-Twilio-Signature": signature})


def text(stack: Stack, body: str, person: str = PERSON, ours: str = FROM) -> dict[str, Any]:
    """``person`` texts ``body`` to our number, through the simulator."""
    r = httpx.post(f"{stack.sim}/_sim/incoming", json={"From": person, "To": ours, "Body": body})
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    assert answer["status"] == 200, answer
    return answer


def incoming_tasks(stack: Stack) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = stack.client.get("/api/v1/processes/incoming-sms/tasks").json()[
        "tasks"
    ]
    return tasks


def ask(stack: Stack, to: str = PERSON, **extra: Any) -> str:
    data = {"Number_to": to, "Number_from": FROM, "Body": "Reply YES to confirm", **extra}
    task_id: str = stack.create(data, process="ask-sms")["task_id"]
    return task_id


def wait_node(stack: Stack, task_id: str, node: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.time() + timeout
    while True:
        task = stack.task(task_id)
        if task["node"]["id"] == node:
            return task
        assert time.time() < deadline, f"task never reached {node}: {task}"
        time.sleep(0.03)


# -- incoming messages -----------------------------------------------------------------------
def test_signed_incoming_message_is_one_task_and_its_retry_makes_no_second(stack: Stack) -> None:
    url = incoming_url(stack)
    params = incoming_params(ACCOUNT, PERSON, FROM, "Hello there", ["https://example.com/a.jpg"])
    first = post_signed(url, params)
    assert first.status_code == 200
    assert first.headers["content-type"].startswith("text/xml")
    assert first.text.endswith("<Response/>")
    retry = post_signed(url, params)
    assert retry.status_code == 200 and retry.text.endswith("<Response/>")
    deadline = time.time() + 10
    while not incoming_tasks(stack) or incoming_tasks(stack)[0]["state"] != "done":
        assert time.time() < deadline
        time.sleep(0.05)
    time.sleep(0.2)  # a second task, if any, would be there by now
    tasks = incoming_tasks(stack)
    assert len(tasks) == 1
    task = tasks[0]
    assert task["ref"] == params["MessageSid"]
    assert task["node"]["id"] == "received"
    data = task["data"]
    assert (data["From"], data["To"], data["Body"]) == (PERSON, FROM, "Hello there")
    assert data["NumMedia"] == "1" and data["MediaUrl0"] == "https://example.com/a.jpg"


def test_forged_signature_is_403_and_stores_nothing(stack: Stack) -> None:
    url = incoming_url(stack)
    before = stack.counts()
    params = incoming_params(ACCOUNT, PERSON, FROM, "STOP")
    assert post_signed(url, params, token="not-the-token").status_code == 403
    assert httpx.post(url, data=params).status_code == 403
    time.sleep(0.2)
    assert stack.counts() == before
    assert stack.client.get("/api/v1/opt-outs").json()["opt_outs"] == []


def test_start_node_url_of_another_process_takes_no_messages(stack: Stack) -> None:
    view = stack.client.get("/api/v1/processes/sending-sms").json()
    start = next(n for n in view["nodes"] if n["kind"] == "start")
    assert "callback_urls" not in start


def test_process_may_answer_at_once_with_a_message(stack: Stack) -> None:
    import yaml

    from orchestrator.services.deploy import SHIPPED_DIR

    raw = yaml.safe_load((SHIPPED_DIR / "incoming-sms.yaml").read_text())
    raw["incoming_sms"] = {"reply": "Got it: {{ Body }} & thanks"}
    stack.deploy(raw)
    r = post_signed(incoming_url(stack), incoming_params(ACCOUNT, PERSON, FROM, "<hi>"))
    assert r.status_code == 200
    assert r.text.endswith(
        "<Response><Message>Got it: &lt;hi&gt; &amp; thanks</Message></Response>"
    )
    # Not for keywords: Twilio answers those itself.
    r = post_signed(incoming_url(stack), incoming_params(ACCOUNT, PERSON, FROM, "stop"))
    assert r.text.endswith("<Response/>")


# -- Ask by SMS ----------------------------------------------------------------------------------
def test_ask_then_reply_ends_replied_with_the_text(stack: Stack) -> None:
    task_id = ask(stack)
    wait_node(stack, task_id, "waiting_for_reply")
    params = incoming_params(ACCOUNT, PERSON, FROM, "yes please")
    assert post_signed(incoming_url(stack), params).status_code == 200
    done = stack.wait(task_id)
    assert done["node"]["id"] == "replied" and done["outcome"] == "success"
    assert done["data"]["reply"] == "yes please"
    assert done["data"]["reply_sid"] == params["MessageSid"]
    assert done["data"]["status"] == "delivered"
    # Twilio's retry of the same message: nothing new.
    assert post_signed(incoming_url(stack), params).status_code == 200
    time.sleep(0.3)
    assert incoming_tasks(stack) == []  # the reply went to the ask, not to Incoming SMS


def test_reply_before_the_task_waits_is_kept_and_applied(stack: Stack) -> None:
    stack.sim_config(callback_delay=1.0)  # the ask sits in "sending" until delivered
    task_id = ask(stack)
    deadline = time.time() + 10
    while not httpx.get(f"{stack.sim}/_sim/messages").json():
        assert time.time() < deadline
        time.sleep(0.02)
    text(stack, "YES")
    deadline = time.time() + 10
    while True:
        with stack.db.read() as conn:
            row = conn.execute(
                select(callbacks.c.status, callbacks.c.task_id).where(callbacks.c.form == "reply")
            ).first()
        if row is not None:
            break
        assert time.time() < deadline
        time.sleep(0.02)
    assert tuple(row) == ("pending", task_id)
    assert stack.task(task_id)["node"]["id"] == "sending"
    done = stack.wait(task_id)
    assert done["node"]["id"] == "replied"
    assert done["data"]["reply"] == "YES"
    assert incoming_tasks(stack) == []


def test_no_reply_escalates_after_reply_timeout(stack: Stack) -> None:
    task_id = ask(stack, reply_timeout=1)
    done = stack.wait(task_id)
    assert done["outcome"] == "escalation" and done["node"]["id"] == "no_reply"
    assert done["data"]["code"] == "NO_REPLY"
    # A reply after that is nobody's: it becomes an Incoming SMS task.
    text(stack, "sorry, late")
    deadline = time.time() + 10
    while not incoming_tasks(stack):
        assert time.time() < deadline
        time.sleep(0.05)
    assert incoming_tasks(stack)[0]["data"]["Body"] == "sorry, late"


def test_two_waiting_asks_of_a_pair_take_replies_oldest_first(stack: Stack) -> None:
    first = ask(stack)
    wait_node(stack, first, "waiting_for_reply")
    second = ask(stack)
    wait_node(stack, second, "waiting_for_reply")
    text(stack, "one")
    text(stack, "two")
    assert stack.wait(first)["data"]["reply"] == "one"
    assert stack.wait(second)["data"]["reply"] == "two"


def test_sms_failure_is_the_asks_escalation(stack: Stack) -> None:
    done = stack.wait(ask(stack, to="+15551233003"))
    assert done["node"]["id"] == "not_sent"
    assert done["data"]["code"] == "30003"


def test_ask_without_our_number_escalates_before_sending(stack: Stack) -> None:
    blank = stack.run("ask-sms", {"Number_to": PERSON, "Number_from": " ", "Body": "Reply YES"})
    assert blank["node"]["id"] == "not_sent"
    assert blank["data"]["code"] == "BAD_CONVERSATION"
    assert "to must give a phone number" in blank["data"]["message"]
    missing = stack.run("ask-sms", {"Number_to": PERSON, "Body": "Reply YES"})
    assert missing["node"]["id"] == "not_sent"
    assert missing["data"]["code"] == "TEMPLATE_METADATA_ERROR"
    assert stack.sim_stats()["requests"] == 0


def test_simulator_rule_replies_by_itself(stack: Stack) -> None:
    stack.sim_config(reply_rules=[{"pattern": r"^\+1555123000[5-9]$", "body": "Yes", "delay": 0.1}])
    done = stack.wait(ask(stack, to="+15551230007"))
    assert done["node"]["id"] == "replied" and done["data"]["reply"] == "Yes"


# -- opt-outs -----------------------------------------------------------------------------------
def test_stop_then_send_is_opted_out_without_twilio_and_start_sends_again(stack: Stack) -> None:
    text(stack, "  Stop ")
    listed = stack.client.get("/api/v1/opt-outs").json()["opt_outs"]
    assert [(o["recipient"], o["sender"], o["source"]) for o in listed] == [
        (PERSON, FROM, "keyword:STOP")
    ]
    before = stack.sim_stats()["requests"]
    done = stack.wait(stack.sms(PERSON, "promo")["task_id"])
    assert done["outcome"] == "escalation"
    assert (done["data"]["code"], done["data"]["error"]) == ("OPTED_OUT", "RECIPIENT_OPTED_OUT")
    assert stack.sim_stats()["requests"] == before  # Twilio was not asked
    # Another sender is not affected.
    other = stack.wait(
        stack.create({"Number_to": PERSON, "Number_from": "+14155550100", "Body": "x"})["task_id"]
    )
    assert other["outcome"] == "success"
    text(stack, "START")
    assert stack.client.get("/api/v1/opt-outs").json()["opt_outs"] == []
    again = stack.wait(stack.sms(PERSON, "welcome back")["task_id"])
    assert again["outcome"] == "success"


def test_twilio_21610_records_the_pair(stack: Stack) -> None:
    unsubscribed = "+15005550004"  # the simulator's (and Twilio's) magic number for 21610
    done = stack.wait(stack.sms(unsubscribed)["task_id"])
    assert str(done["data"]["code"]) == "21610"
    listed = stack.client.get("/api/v1/opt-outs").json()["opt_outs"]
    assert [(o["recipient"], o["source"]) for o in listed] == [(unsubscribed, "twilio:21610")]
    before = stack.sim_stats()["requests"]
    again = stack.wait(stack.sms(unsubscribed)["task_id"])
    assert again["data"]["code"] == "OPTED_OUT"
    assert stack.sim_stats()["requests"] == before


def test_opt_outs_over_api_cli_and_console(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestrator.cli import main

    text(stack, "UNSUBSCRIBE", person="+15551230002")
    text(stack, "quit", person="+15551230003", ours="+14155550100")
    api = stack.client.get("/api/v1/opt-outs", params={"sender": "+14155550100"}).json()
    assert [o["recipient"] for o in api["opt_outs"]] == ["+15551230003"]
    assert stack.client.get("/api/v1/opt-outs", params={"limit": "0"}).status_code == 422
    assert stack.client.get("/api/v1/opt-outs", params={"nope": "1"}).status_code == 422
    assert main(["--database-url", stack.settings.database_url, "optout", "list"]) == 0
    out = capsys.readouterr().out
    assert "+15551230002" in out and "keyword:UNSUBSCRIBE" in out and "keyword:QUIT" in out
    page = stack.client.get("/console/opt-outs", params={"recipient": "+15551230002"})
    assert page.status_code == 200
    assert "+15551230002" in page.text and "+15551230003" not in page.text
    # The process page lists the incoming-message URL of Incoming SMS's start node.
    process_page = stack.client.get("/console/processes/incoming-sms").text
    assert incoming_url(stack) in process_page


def test_documented_confirmation_flow_branches_on_yes_no_and_anything_else(
    stack: Stack,
) -> None:
    """The example of docs/process-format.md §3.11, deployed as written."""
    import re
    from pathlib import Path

    import yaml

    doc = (Path(__file__).resolve().parents[2] / "docs" / "process-format.md").read_text()
    section = doc.split("**Example: a confirmation that branches on YES / NO", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    stack.deploy(yaml.safe_load(block.group(1)))

    def confirm(to: str) -> str:
        data = {"Number_to": to, "Number_from": FROM, "at": "10:00"}
        task_id: str = stack.create(data, process="confirm-appointment")["task_id"]
        wait_node(stack, task_id, "answer")
        return task_id

    yes, no, unclear = (confirm(f"+1555123000{i}") for i in (1, 2, 4))
    text(stack, " Yes", person="+15551230001")
    text(stack, "no", person="+15551230002")
    text(stack, "maybe?", person="+15551230004")
    assert stack.wait(yes)["node"]["id"] == "confirmed"
    assert stack.wait(no)["node"]["id"] == "cancelled"
    deadline = time.time() + 10
    while (
        len(
            [m for m in httpx.get(f"{stack.sim}/_sim/messages").json() if m["to"] == "+15551230004"]
        )
        < 2
    ):
        assert time.time() < deadline, "no second question was sent"
        time.sleep(0.05)
    wait_node(stack, unclear, "answer")
    text(stack, "YES", person="+15551230004")
    done = stack.wait(unclear)
    assert done["node"]["id"] == "confirmed" and done["data"]["reply"] == "YES"


def test_send_to_many_skips_an_opted_out_recipient(stack: Stack) -> None:
    text(stack, "END", person="+15551230002")
    before = stack.sim_stats()["messages_created"]
    data = {"smsTo": ["+15551230001", "+15551230002"], "smsFrom": FROM, "smsBody": "news"}
    done = stack.run("send-to-many", data)
    assert done["data"]["failedNumbers"] == "+15551230002"
    assert done["data"]["failedDetails"]["+15551230002"]["code"] == "OPTED_OUT"
    assert list(done["data"]["smsResult"].values()) == ["+15551230001"]
    assert stack.sim_stats()["messages_created"] == before + 1


# -- the process format ---------------------------------------------------------------------
def _definition_error(raw: dict[str, Any]) -> str:
    from orchestrator.engine.definition import DefinitionError, parse_definition

    with pytest.raises(DefinitionError) as info:
        parse_definition(raw)
    return str(info.value)


def _process(nodes: dict[str, Any], **top: Any) -> dict[str, Any]:
    base = {"slug": "p", "title": "P", "nodes": nodes, **top}
    base["nodes"].setdefault("bad", {"kind": "escalation"})
    base["nodes"].setdefault("ok", {"kind": "success"})
    return base


def test_wait_reply_and_expect_reply_are_checked() -> None:
    from orchestrator.engine.definition import parse_definition

    pair = {"from": "{{ Number_to }}", "to": "{{ Number_from }}"}
    good = _process(
        {
            "start": {
                "kind": "start",
                "logics": [{"type": "expect_reply", **pair}, {"type": "go", "to": "w"}],
            },
            "w": {
                "kind": "wait",
                "logics": [{"type": "wait_reply", **pair}, {"type": "go", "to": "ok"}],
            },
        },
        incoming_sms={"reply": "Thanks {{ From }}"},
    )
    assert parse_definition(good).incoming_sms == {"reply": "Thanks {{ From }}"}
    no_from = _process(
        {
            "start": {"kind": "start", "logics": [{"type": "go", "to": "w"}]},
            "w": {
                "kind": "wait",
                "logics": [{"type": "wait_reply", "to": "+1"}, {"type": "go", "to": "ok"}],
            },
        }
    )
    assert "logics[0].from" in _definition_error(no_from)
    outside = _process(
        {
            "start": {
                "kind": "start",
                "logics": [{"type": "wait_reply", **pair}, {"type": "go", "to": "ok"}],
            },
        }
    )
    assert "wait_reply belongs in a wait node" in _definition_error(outside)
    second = _process(
        {
            "start": {"kind": "start", "logics": [{"type": "go", "to": "w"}]},
            "w": {
                "kind": "wait",
                "logics": [
                    {"type": "wait_callback"},
                    {"type": "wait_reply", **pair},
                    {"type": "go", "to": "ok"},
                ],
            },
        }
    )
    assert "one wait logic" in _definition_error(second)
    bad_incoming = _process(
        {"start": {"kind": "start", "logics": [{"type": "go", "to": "ok"}]}}, incoming_sms="yes"
    )
    assert "incoming_sms" in _definition_error(bad_incoming)


def test_a_send_begun_before_the_opt_out_is_resolved_not_refused(stack: Stack) -> None:
    """A worker sent the message and died before its commit; then the recipient texted
    STOP. The step runs again: the send is resolved from its record (the message is
    adopted), not refused, so the task tells the truth: the SMS went out."""
    import json

    from sqlalchemy import update

    from orchestrator.store import effects as effect_store
    from orchestrator.store import processes as process_store
    from orchestrator.store.tables import tasks

    r = httpx.post(
        f"{stack.sim}/2010-04-01/Accounts/{ACCOUNT}/Messages.json",
        auth=(ACCOUNT, TOKEN),
        data={"To": "+15551230003", "From": FROM, "Body": "sent before STOP"},
    )
    assert r.status_code == 201
    text(stack, "STOP", person="+15551230003")
    # Any task, once its own first step is over, rewritten into Sending SMS's send step.
    task = stack.create({"sid": "SMx"}, ref="SMx", process="getting-callback")
    stack.wait(task["task_id"], state="waiting")
    data = {"Number_to": "+15551230003", "Number_from": FROM, "Body": "sent before STOP"}
    with stack.db.write() as conn:
        proc = process_store.get_process(conn, "sending-sms")
        assert proc is not None
        conn.execute(
            update(tasks)
            .where(tasks.c.id == task["task_id"])
            .values(
                process_id=proc.id,
                version_id=proc.version_id,
                ref=None,
                node_id="calling_api",
                state="active",
                entry="enter",
                step=7,
                lease_owner=None,
                lease_until=None,
                data=json.dumps(data),
            )
        )
        effect_store.begin(
            conn, task["task_id"], 7, 0, "twilio.create_message", {}, time.time() - 3600
        )
    stack.client.post("/api/v1/processes/sending-sms/tasks", json={"data": {}})  # wake
    waiting = stack.wait(task["task_id"], state="waiting", timeout=20)
    assert waiting["node"]["id"] == "waiting_for_status"
    assert waiting["data"]["sid"] == r.json()["sid"]
