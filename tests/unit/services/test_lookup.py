"""The console's task filters (engine/lookup.filtered_tasks) on both databases, and the
tasks page through the TestClient."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from orchestrator.config import Settings
from orchestrator.http.app import create_app
from orchestrator.services import lookup
from orchestrator.services.errors import ServiceError
from orchestrator.services.tasks import Service


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    app = create_app(Settings(database_url=db_url, secret="s" * 32), run_engine=False)
    with TestClient(app, client=("127.0.0.1", 5000), follow_redirects=False) as c:
        yield c


def _service(c: TestClient) -> Service:
    service: Service = c.app.state.service  # type: ignore[attr-defined]
    return service


def test_filters(client: TestClient) -> None:
    s = _service(client)
    sid = "SM" + "ab" * 16
    a, _ = asyncio.run(
        s.create_task("sending-sms", "r-a", {"Number_to": "+15551230001", "code": 30003})
    )
    b, _ = asyncio.run(
        s.create_task("sending-sms", "r-b", {"Number_to": "+15551230002", "sid": sid})
    )
    c, _ = asyncio.run(
        s.create_task("sending-sms", None, {"Number_to": "+15551230003", "code": "X1"})
    )

    def ids(**filters: str) -> list[str]:
        page = asyncio.run(lookup.filtered_tasks(s, "sending-sms", filters, limit=50, cursor=None))
        return [t["task_id"] for t in page["tasks"]]

    every = [c["task_id"], b["task_id"], a["task_id"]]
    assert ids() == every
    assert ids(code="30003") == [a["task_id"]]
    assert ids(code="X1") == [c["task_id"]]
    assert ids(code="3000") == []  # a whole code, not a prefix
    assert ids(q="+1 (555) 123-0002") == [b["task_id"]]
    assert ids(q=sid) == [b["task_id"]]  # no "Getting callback" copy: found in the data
    assert ids(q="r-a") == [a["task_id"]]
    assert ids(state="active") == every and ids(state="escalation") == []
    assert ids(node="calling_api") == every and ids(node="delivered") == []
    future = str(time.time() + 3600)
    assert ids(since=future) == [] and ids(until=future) == every
    assert ids(since="2000-01-01", until="2000-01-02T00:00:00+00:00") == []
    with pytest.raises(ServiceError) as err:
        ids(since="yesterday")
    assert err.value.code == "INVALID_FILTER"
    # Cursor paging through a filter.
    first = asyncio.run(
        lookup.filtered_tasks(s, "sending-sms", {"state": "active"}, limit=2, cursor=None)
    )
    rest = asyncio.run(
        lookup.filtered_tasks(
            s, "sending-sms", {"state": "active"}, limit=2, cursor=first["next_cursor"]
        )
    )
    assert [t["task_id"] for t in first["tasks"] + rest["tasks"]] == every
    assert rest["next_cursor"] is None


def test_tasks_page(client: TestClient) -> None:
    s = _service(client)
    asyncio.run(s.create_task("sending-sms", "r-1", {"Number_to": "+15551230009", "code": 21211}))
    page = client.get("/console/processes/sending-sms/tasks?code=21211")
    assert page.status_code == 200
    assert "+15551230009" in page.text and "<code>21211</code>" in page.text
    assert "No tasks." in client.get("/console/processes/sending-sms/tasks?code=1").text
    bad = client.get("/console/processes/sending-sms/tasks?since=soon")
    assert bad.status_code == 422 and "Invalid filter" in bad.text
    # A refusal's heading is words, its code beside the message.
    missing = client.get("/console/tasks/000000000000000000000000")
    assert missing.status_code == 404
    assert "<h1>Task not found</h1>" in missing.text and "(TASK_NOT_FOUND)" in missing.text


def test_modify_parameters_as_lines_or_json() -> None:
    from orchestrator.http.console.forms import _parameters

    errors: dict[str, str] = {}
    assert _parameters('answer = yes\n\nMediaUrl = ["https://x/a.png"]', errors) == {
        "answer": "yes",
        "MediaUrl": ["https://x/a.png"],
    }
    assert _parameters('{"a": 1}', errors) == {"a": 1} and not errors
    assert _parameters("a = 1\nnonsense", errors) is None
    assert errors["data"] == "line 2 is not name = value (or give a JSON object)"
