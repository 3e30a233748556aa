"""The console in a real headless Chromium against a running orchestrator and Twilio
simulator: live counters, forms, search, timeline, Modify, copy buttons, login/logout.
SQLite only: the console reads through the same service layer the API tests cover on
both databases, so a PostgreSQL run would exercise nothing new here."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from browser import LAPTOP, PHONE, Tab, launch
from stack import Stack, running_stack

pytestmark = pytest.mark.timeout(120)

WAITER = {
    "slug": "waiter",
    "title": "Waiter",
    "inputs": [{"name": "who", "required": True}],
    "nodes": {
        "start": {"kind": "start", "logics": [{"type": "go", "to": "wait"}]},
        "wait": {
            "kind": "wait",
            "title": "Wait for answer",
            "logics": [
                {"type": "wait_callback"},
                {
                    "type": "condition",
                    "if": [{"param": "answer", "fun": "eq", "value": "yes"}],
                    "to": "ok",
                },
                {"type": "go", "to": "wait"},
            ],
        },
        "ok": {"kind": "success", "title": "Answered"},
        "failed": {"kind": "escalation", "title": "Failed"},
    },
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch()


@pytest.fixture
def stack(sqlite_url: str) -> Iterator[Stack]:
    with running_stack(sqlite_url) as s:
        r = s.client.post("/api/v1/processes", json=WAITER)
        assert r.status_code == 201, r.text
        yield s


@pytest.fixture
def tab(browser: Any, stack: Stack) -> Iterator[Tab]:
    t = Tab(browser, stack.api)
    yield t
    t.close()


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def test_node_counters_follow_an_sms_live(tab: Tab, stack: Stack) -> None:
    expect = _expect()
    stack.sim_config(callback_delay=1.5)  # keeps the task visibly in the wait node
    page = tab.page
    page.goto("/console")
    expect(page.get_by_role("link", name="Sending SMS")).to_be_visible()
    page.get_by_role("link", name="Sending SMS").click()
    waiting = page.locator('svg [data-count-for="waiting_for_status"]')
    delivered = page.locator('svg [data-count-for="delivered"]')
    expect(waiting).to_have_text("0")
    expect(delivered).to_have_text("0")
    # Final nodes green, escalation red (by class; the stylesheet colours them).
    assert "kind-success" in (
        page.locator('svg a[data-node="delivered"]').get_attribute("class") or ""
    )
    assert "kind-escalation" in (
        page.locator('svg a[data-node="api_error"]').get_attribute("class") or ""
    )
    task = stack.sms("+15551230001")
    # The page is not reloaded: the counters move by polling within 2 s.
    expect(waiting).to_have_text("1", timeout=2500)
    tab.shot("process")
    expect(delivered).to_have_text("1", timeout=6000)
    expect(waiting).to_have_text("0")
    expect(page.locator('[data-total="success"]')).to_have_text("1")
    assert stack.task(task["task_id"])["outcome"] == "success"
    # A node opens the list of its tasks, from the keyboard too.
    page.locator('svg a[data-node="delivered"]').focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_contain_text("SMS delivered")
    expect(page.locator("table.tasks tbody tr")).to_have_count(1)
    expect(page.locator("table.tasks")).to_contain_text(task["task_id"])
    tab.shot("node")


def test_copy_a_callback_url(tab: Tab, stack: Stack) -> None:
    expect = _expect()
    tab.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = tab.page
    page.goto("/console/processes/getting-callback")
    expected = stack.callback_url("getting-callback", "twilio")
    expect(page.locator("#url-waiting_for_callback-twilio")).to_have_text(expected)
    button = page.get_by_role("button", name="Copy Twilio plugin URL of Waiting for Callback")
    button.click()
    expect(button).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == expected
    # All three forms are shown with a button each.
    assert page.locator("button.copy").count() == 3
    assert "/api/1/nvp/callback/" in page.locator("#url-waiting_for_callback-nvp").inner_text()


def test_create_with_the_form_find_by_ref_and_read_the_timeline(tab: Tab, stack: Stack) -> None:
    expect = _expect()
    page = tab.page
    page.goto("/console/processes/sending-sms")
    page.get_by_role("link", name="+ New task").click()
    # Missing required inputs: the errors are shown beside their fields, nothing created.
    before = stack.counts()["tasks"]
    page.get_by_label("Ref").fill("order-77")
    page.get_by_label("Number_to").fill("+15551230001")
    page.get_by_role("button", name="Create task").click()
    expect(page.locator("#in_Body-error")).to_have_text("Body is required")
    expect(page.get_by_label("Number_to")).to_have_value("+15551230001")
    assert stack.counts()["tasks"] == before
    tab.shot("new-task-errors")
    page.get_by_label("Number_from").fill("+15005550006")
    page.locator("#in_Body").fill("Your order shipped")
    page.get_by_label("AuthToken").fill("not-shown-anywhere")
    page.get_by_label("AuthToken").fill("")
    page.get_by_role("button", name="Create task").click()
    expect(page).to_have_url(re.compile(r"/console/tasks/[0-9a-f]{24}$"))
    task_id = page.url.rsplit("/", 1)[1]
    stack.wait(task_id)
    # Find it by ref with the keyboard: skip link, brand, Processes, then the search box.
    page.goto("/console")
    for _ in range(4):
        page.keyboard.press("Tab")
    expect(page.locator("#q")).to_be_focused()
    page.keyboard.type("order-77")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(f"/console/tasks/{task_id}$"))
    expect(page.locator("#outcome")).to_have_text("success")
    timeline = page.locator("ol.timeline")
    # Twilio's callbacks reached the copy in "Getting callback"; their raw fields show here.
    callbacks = timeline.locator("li.ev-callback")
    expect(
        callbacks.filter(has_text="MessageStatus").filter(has_text="delivered")
    ).not_to_have_count(0)
    expect(timeline).to_contain_text("SmsSid")
    expect(timeline).to_contain_text("Twilio callback received: status delivered")
    expect(timeline).to_contain_text("Moved on from Calling API to Waiting for final status")
    tab.shot("task")
    # Searching by phone number and by message sid finds it too.
    sid = stack.task(task_id)["data"]["sid"]
    page.goto(f"/console/search?q={sid}")
    expect(page.locator("table.tasks")).to_contain_text(task_id)
    page.goto("/console/search?q=%2B15551230001")
    expect(page.locator("table.tasks")).to_contain_text(task_id)
    tab.shot("search")


def test_an_api_error_shows_code_message_and_more_info(tab: Tab, stack: Stack) -> None:
    expect = _expect()
    task = stack.sms("+15005550001")  # the simulator refuses it: 21211
    stack.wait(task["task_id"])
    page = tab.page
    page.goto(f"/console/tasks/{task['task_id']}")
    box = page.get_by_role("region", name="error")
    expect(box).to_contain_text("21211")
    expect(box).to_contain_text("is not a valid phone number")
    expect(box.get_by_role("link")).to_have_attribute("href", re.compile(r"twilio\.com/docs/"))
    expect(page.locator("li.ev-logic_error")).to_contain_text("21211")
    tab.shot("task-error")


def test_modify_a_waiting_task(tab: Tab, stack: Stack) -> None:
    expect = _expect()
    task = stack.create({"who": "ann"}, ref="w-1", process="waiter")
    stack.wait(task["task_id"], state="waiting")
    page = tab.page
    page.goto(f"/console/tasks/{task['task_id']}")
    page.get_by_role("link", name="Modify").click()
    expect(page.get_by_label("Ref")).to_have_value("w-1")
    page.get_by_label("Parameters").fill("{answer: yes}")
    page.get_by_role("button", name="Modify").click()
    expect(page.locator("#data-error")).to_contain_text("not valid JSON")
    page.get_by_label("Ref").fill("nobody")
    page.get_by_label("Parameters").fill("answer = yes")
    page.get_by_role("button", name="Modify").click()
    expect(page.locator("#ref-error")).to_contain_text("no unfinished task")
    tab.shot("modify-errors")
    assert stack.task(task["task_id"])["state"] == "waiting"
    page.get_by_label("Ref").fill("w-1")
    page.get_by_role("button", name="Modify").click()
    expect(page).to_have_url(re.compile(f"/console/tasks/{task['task_id']}$"))
    stack.wait(task["task_id"])
    page.reload()
    expect(page.locator("#outcome")).to_have_text("success")
    expect(page.locator("ol.timeline")).to_contain_text("answer")


def test_phone_width_has_no_sideways_scroll(browser: Any, stack: Stack) -> None:
    expect = _expect()
    task = stack.sms("+15551230001")
    stack.wait(task["task_id"])
    phone = Tab(browser, stack.api, PHONE)
    try:
        for name, path in [
            ("phone-processes", "/console"),
            ("phone-process", "/console/processes/sending-sms"),
            ("phone-task", f"/console/tasks/{task['task_id']}"),
            ("phone-new-task", "/console/processes/sending-sms/new"),
            ("phone-tasks", "/console/processes/sending-sms/tasks"),
            ("phone-node", "/console/processes/sending-sms/nodes/delivered"),
        ]:
            phone.page.goto(path)
            expect(phone.page.locator("h1")).to_be_visible()
            wide = phone.page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert wide <= 0, f"{path} scrolls sideways by {wide}px at phone width"
            phone.shot(name)
    finally:
        phone.close()


def test_log_in_and_out_with_an_api_key(browser: Any, sqlite_url: str) -> None:
    expect = _expect()
    with running_stack(
        sqlite_url, api_keys="ops:s3cret-key-1-long-enough,audit:other-key-long-enough"
    ) as stack:
        tab = Tab(browser, stack.api, LAPTOP)
        page = tab.page
        try:
            page.goto("/console/processes/sending-sms")
            expect(page).to_have_url(re.compile(r"/console/login\?next="))
            page.get_by_label("API key secret").fill("wrong")
            page.get_by_role("button", name="Log in").click()
            expect(page.locator("#secret-error")).to_have_text("no active API key has this secret")
            tab.shot("login")
            page.get_by_label("API key secret").fill("s3cret-key-1-long-enough")
            page.get_by_role("button", name="Log in").click()
            # Back where it was headed, logged in as the key's login.
            expect(page).to_have_url(re.compile(r"/console/processes/sending-sms$"))
            expect(page.locator(".who")).to_have_text("ops")
            (cookie,) = [c for c in tab.context.cookies() if c["name"] == "orch_console"]
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
            assert "s3cret" not in cookie["value"]
            page.get_by_role("button", name="Log out").click()
            expect(page).to_have_url(re.compile(r"/console/login$"))
            page.goto("/console")
            expect(page).to_have_url(re.compile(r"/console/login"))
        finally:
            tab.close()
