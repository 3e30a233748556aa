"""The console as an operator's tool, in headless Chromium: the filtered tasks view, the
live task page, retry / cancel from a task, bulk cancel with its count, edge labels, and
a read-only key that sees no action (and whose API calls are refused)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from browser import LAPTOP, Tab, launch
from stack import Stack, running_stack
from test_console_e2e import WAITER

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch()


@pytest.fixture
def stack(sqlite_url: str) -> Iterator[Stack]:
    with running_stack(sqlite_url) as s:
        s.deploy(WAITER)
        yield s


@pytest.fixture
def tab(browser: Any, stack: Stack) -> Iterator[Tab]:
    t = Tab(browser, stack.api)
    yield t
    t.close()


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def test_tasks_view_filters(tab: Tab, stack: Stack) -> None:
    expect = _expect()
    ok1 = stack.sms("+15551230001")
    ok2 = stack.sms("+15551230002")
    refused = stack.sms("+15005550001")  # 21211
    undelivered = stack.sms("+15551233003")  # 30003
    for t in (ok1, ok2, refused, undelivered):
        stack.wait(t["task_id"])
    page = tab.page
    page.goto("/console/processes/sending-sms")
    page.get_by_role("link", name="All tasks").click()
    rows = page.locator("table.tasks tbody tr")
    expect(rows).to_have_count(4)
    # Columns that matter for an SMS: recipient, status, code, and how long it took.
    row = rows.filter(has_text="+15551233003")
    expect(row).to_contain_text("undelivered")
    expect(row).to_contain_text("30003")
    expect(row).to_contain_text(re.compile(r"\d+(\.\d)? s"))
    tab.shot("tasks")
    page.get_by_label("State").select_option("escalation")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(2)
    page.get_by_label("Error code").fill("21211")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text(refused["task_id"][:12])
    tab.shot("tasks-filtered")
    page.get_by_role("link", name="Clear").click()
    page.get_by_label("Ref, sid or phone").fill("+1 555 123 0002")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("+15551230002")
    sid = stack.task(ok1["task_id"])["data"]["sid"]
    page.get_by_label("Ref, sid or phone").fill(sid)
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text(ok1["task_id"][:12])
    page.get_by_label("Ref, sid or phone").fill("")
    page.get_by_label("Node").select_option("api_error")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    # A time range, typed in local time: everything was created before tomorrow, none after.
    page.get_by_label("Node").select_option("")
    page.get_by_label("Created from").fill("2099-01-01T00:00")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)  # the "No tasks." row
    expect(rows).to_have_text("No tasks.")
    assert "since=2099-01-0" in page.url
    page.get_by_label("Created from").fill("")
    page.get_by_label("to").fill("2099-01-01T00:00")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(4)


def test_the_task_page_follows_the_task_live(tab: Tab, stack: Stack) -> None:
    expect = _expect()
    stack.sim_config(callback_delay=1.5)
    task = stack.sms("+15551230001")
    page = tab.page
    page.goto(f"/console/tasks/{task['task_id']}")
    expect(page.locator("#outcome")).not_to_have_text("success")
    # No reload: the page polls and redraws when the task moves on.
    expect(page.locator("#outcome")).to_have_text("success", timeout=8000)
    expect(page.locator("#task-node")).to_have_text("SMS delivered")
    timeline = page.locator("ol.timeline")
    expect(timeline).to_contain_text("Twilio callback received: status delivered")
    expect(page.locator("#live")).to_have_text("live")
    # Local times (no "+00:00"), durations between events, the data as a table.
    expect(page.locator("ol.timeline time").first).not_to_contain_text("+00:00")
    expect(page.locator(".ev-head .gap").first).to_contain_text(" s")
    expect(page.locator("table.kv")).to_contain_text("Number_to")
    page.get_by_text("Raw JSON").click()
    expect(page.locator("details.raw pre")).to_contain_text('"Number_to": "+15551230001"')
    tab.shot("task-live")


def test_retry_and_cancel_from_the_task_page(tab: Tab, stack: Stack) -> None:
    expect = _expect()
    refused = stack.sms("+15005550001")
    stack.wait(refused["task_id"])
    page = tab.page
    page.goto(f"/console/tasks/{refused['task_id']}")
    page.get_by_role("button", name="Retry").click()
    expect(page.locator("#did")).to_contain_text("retried")
    stack.wait(refused["task_id"])
    expect(page.locator("ol.timeline")).to_contain_text(
        "Retried from Calling API by console:anonymous@127.0.0.1", timeout=5000
    )
    assert stack.sim_stats()["requests"] == 2
    tab.shot("task-retried")
    waiting = stack.create({"who": "ann"}, process="waiter")
    stack.wait(waiting["task_id"], state="waiting")
    page.goto(f"/console/tasks/{waiting['task_id']}")
    page.get_by_label("Reason").fill("customer called")
    page.get_by_role("button", name="Cancel task").click()
    expect(page.locator("#outcome")).to_have_text("escalation")
    expect(page.locator("ol.timeline")).to_contain_text(
        "Cancelled in Wait for answer by console:anonymous@127.0.0.1: customer called"
    )
    expect(page.get_by_role("region", name="error")).to_contain_text("CANCELLED")
    assert stack.task(waiting["task_id"])["data"]["code"] == "CANCELLED"
    tab.shot("task-cancelled")


def test_bulk_cancel_says_how_many(tab: Tab, stack: Stack) -> None:
    expect = _expect()
    ids = [stack.create({"who": f"p{i}"}, process="waiter")["task_id"] for i in range(3)]
    for i in ids:
        stack.wait(i, state="waiting")
    page = tab.page
    page.goto("/console/processes/waiter/nodes/wait")
    page.get_by_role("link", name="Cancel all…").click()
    expect(page.locator("#bulk-count")).to_contain_text("This will cancel 3 tasks")
    tab.shot("bulk-confirm")
    page.get_by_label("Reason").fill("campaign stopped")
    page.get_by_role("button", name="Cancel 3 tasks").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("3 tasks cancelled")
    tab.shot("bulk-done")
    assert all(stack.task(i)["outcome"] == "escalation" for i in ids)


def test_edge_labels_on_the_graph(tab: Tab, stack: Stack) -> None:
    expect = _expect()
    page = tab.page
    page.goto("/console/processes/sending-sms")
    labels = page.locator("svg text.edge-label")
    expect(labels.filter(has_text="status regexp")).not_to_have_count(0)
    expect(labels.filter(has_text="after")).not_to_have_count(0)  # the time limit
    expect(labels.filter(has_text="error")).not_to_have_count(0)
    tab.shot("process-edges")


def test_a_read_only_key_sees_no_actions(browser: Any, sqlite_url: str) -> None:
    expect = _expect()
    keys = "ops:operator-secret-long-1,viewer:viewer-secret-long-01:read"
    with running_stack(sqlite_url, api_keys=keys) as stack:
        op = {"Authorization": "Bearer operator-secret-long-1"}
        r = stack.client.post("/api/v1/processes", json=WAITER, headers=op)
        assert r.status_code == 201, r.text
        r = stack.client.post(
            "/api/v1/processes/waiter/tasks", json={"data": {"who": "x"}}, headers=op
        )
        task_id = r.json()["task_id"]
        tab = Tab(browser, stack.api, LAPTOP)
        page = tab.page
        try:
            page.goto("/console/login")
            page.get_by_label("API key secret").fill("viewer-secret-long-01")
            page.get_by_role("button", name="Log in").click()
            expect(page.locator(".who")).to_have_text("viewer")
            page.goto("/console/processes/waiter")
            expect(page.get_by_role("link", name="All tasks")).to_be_visible()
            expect(page.get_by_role("link", name="+ New task")).to_have_count(0)
            page.goto("/console/processes/waiter/nodes/wait")
            expect(page.locator("table.tasks tbody tr")).to_have_count(1)
            expect(page.get_by_role("link", name="Cancel all…")).to_have_count(0)
            page.goto(f"/console/tasks/{task_id}")
            expect(page.locator("#outcome")).to_be_visible()
            expect(page.get_by_role("region", name="repair")).to_have_count(0)
            expect(page.get_by_role("button", name="Retry")).to_have_count(0)
            tab.shot("read-only-task")
            # The server refuses what the page hides.
            reader = {"Authorization": "Bearer viewer-secret-long-01"}
            r = httpx.post(f"{stack.api}/api/v1/tasks/{task_id}/cancel", json={}, headers=reader)
            assert r.status_code == 403 and r.json()["error"]["code"] == "FORBIDDEN"
            r = httpx.get(f"{stack.api}/api/v1/tasks/{task_id}", headers=op)
            assert r.json()["state"] == "waiting"
        finally:
            tab.close()
