"""The API description: every operation summarised and described, the callback forms and
the Corezoid API included, each process's inputs shown, a valid OpenAPI 3.1 document, and
a browsable page served from the package (no internet) under the console's CSP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from browser import Tab, launch
from openapi_spec_validator import validate
from stack import Stack, running_stack

METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture
def stack(sqlite_url: str) -> Iterator[Stack]:
    with running_stack(sqlite_url) as s:
        yield s


def test_every_operation_is_described_and_the_document_is_valid(stack: Stack) -> None:
    doc: dict[str, Any] = stack.client.get("/api/v1/openapi.json").json()
    validate(doc)  # OpenAPI 3.1, by openapi-spec-validator
    assert doc["openapi"].startswith("3.1")
    ops = {
        (path, method): op
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in METHODS
    }
    for key, op in ops.items():
        assert op.get("summary") and op.get("description") and op.get("tags"), key
        assert op.get("operationId"), key
    ids = {op["operationId"] for op in ops.values()}
    assert {"jsonCallback", "twilioStatusCallback", "nvpCallback", "corezoidApi"} <= ids
    assert {"createTask", "listTasks", "getTaskHistory", "metrics"} <= ids
    assert "apiCall" in doc["webhooks"]
    # Each deployed process's declared inputs: a schema, a row, an example.
    inputs = doc["components"]["schemas"]["Inputs_sending-sms"]
    assert {"Number_to", "Body"} <= set(inputs["required"])
    assert "MediaUrl" in inputs["properties"]
    create = doc["paths"]["/api/v1/processes/{process}/tasks"]["post"]
    assert "| `sending-sms` |" in create["description"] and "`Number_to`*" in create["description"]
    assert "sending-sms" in create["requestBody"]["content"]["application/json"]["examples"]


def test_swagger_ui_page_renders_from_local_assets(stack: Stack) -> None:
    outside: list[str] = []

    def note(request: Any) -> None:
        if not request.url.startswith(stack.api):
            outside.append(request.url)

    for browser in launch():
        tab = Tab(browser, stack.api)
        tab.page.on("request", note)
        response = tab.page.goto("/console/api")
        assert response is not None and response.status == 200
        assert "script-src 'self'" in response.headers["content-security-policy"]
        tab.page.wait_for_selector("text=Create a task")
        tab.page.wait_for_selector("text=Twilio status callback (Twilio plugin form)")
        assert tab.page.locator(".opblock").count() >= 12
        assert not [u for u in outside if not u.startswith("data:")], outside
        tab.close()  # fails on any console error (a CSP violation among them)
