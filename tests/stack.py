"""An orchestrator and a Twilio simulator running on 127.0.0.1, for end-to-end tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from servers import run_app
from sqlalchemy import func, select

from orchestrator.config import Settings
from orchestrator.http.app import create_app
from orchestrator.servers import free_port
from orchestrator.store.db import Database
from orchestrator.store.tables import callbacks, task_events, tasks
from orchestrator.twilio.simulator import SimulatorConfig
from orchestrator.twilio.simulator import create_app as create_simulator

ACCOUNT = "AC" + "a" * 32
TOKEN = "test-auth-token"
FROM = "+15005550006"


@dataclass
class Stack:
    api: str
    sim: str
    settings: Settings
    client: httpx.Client
    db: Database = field(init=False)

    def __post_init__(self) -> None:
        self.db = Database(self.settings.database_url)

    def create(
        self, data: dict[str, Any], *, ref: str | None = None, process: str = "sending-sms"
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"data": data}
        if ref is not None:
            body["ref"] = ref
        r = self.client.post(f"/api/v1/processes/{process}/tasks", json=body)
        assert r.status_code == 201, r.text
        task: dict[str, Any] = r.json()
        return task

    def deploy(self, *definitions: dict[str, Any]) -> dict[str, Any]:
        r = self.client.post("/api/v1/processes", json=list(definitions))
        assert r.status_code in (200, 201), r.text
        answer: dict[str, Any] = r.json()
        return answer

    def run(
        self, process: str, data: dict[str, Any], *, state: str = "done", timeout: float = 20.0
    ) -> dict[str, Any]:
        """Create a task and wait until it reaches ``state``."""
        return self.wait(
            self.create(data, process=process)["task_id"], state=state, timeout=timeout
        )

    def sms(self, to: str, body: str = "hello", **extra: Any) -> dict[str, Any]:
        return self.create({"Number_to": to, "Number_from": FROM, "Body": body, **extra})

    def task(self, task_id: str) -> dict[str, Any]:
        r = self.client.get(f"/api/v1/tasks/{task_id}")
        assert r.status_code == 200, r.text
        task: dict[str, Any] = r.json()
        return task

    def history(self, task_id: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = self.client.get(f"/api/v1/tasks/{task_id}/history").json()[
            "events"
        ]
        return events

    def wait(self, task_id: str, *, state: str = "done", timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.time() + timeout
        while True:
            task = self.task(task_id)
            if task["state"] == state:
                return task
            assert time.time() < deadline, f"task never reached {state}: {task}"
            time.sleep(0.05)

    def child(self, task_id: str) -> dict[str, Any]:
        """The "Getting callback" task copied from a "Sending SMS" task."""
        with self.db.read() as conn:
            child_id = conn.execute(
                select(tasks.c.id).where(tasks.c.parent_task_id == task_id)
            ).scalar_one()
        return self.task(child_id)

    def sim_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = httpx.get(f"{self.sim}/_sim/stats").json()
        return stats

    def sim_config(self, **values: Any) -> None:
        httpx.post(f"{self.sim}/_sim/config", json=values).raise_for_status()

    def counts(self) -> dict[str, int]:
        with self.db.read() as conn:
            return {
                "tasks": conn.execute(select(func.count()).select_from(tasks)).scalar_one(),
                "events": conn.execute(select(func.count()).select_from(task_events)).scalar_one(),
                "callbacks": conn.execute(select(func.count()).select_from(callbacks)).scalar_one(),
            }

    def callback_url(self, process: str, form: str) -> str:
        view = self.client.get(f"/api/v1/processes/{process}").json()
        for node in view["nodes"]:
            if "callback_urls" in node:
                url: str = node["callback_urls"][form]
                return url
        raise AssertionError(f"{process} has no wait node")


@contextmanager
def running_stack(
    db_url: str,
    sim: SimulatorConfig | None = None,
    *,
    sim_wrap: Callable[[Any], Any] | None = None,
    **overrides: Any,
) -> Iterator[Stack]:
    """``sim_wrap`` wraps the simulator's ASGI app (e.g. to check every request)."""
    sim_config = sim or SimulatorConfig(account_sid=ACCOUNT, auth_token=TOKEN, callback_delay=0.02)
    sim_app = create_simulator(sim_config)
    with run_app(sim_wrap(sim_app) if sim_wrap else sim_app) as sim_url:
        port = free_port()
        values: dict[str, Any] = {
            "database_url": db_url,
            "public_url": f"http://127.0.0.1:{port}",
            "twilio_api_url": sim_url,
            "twilio_account_sid": ACCOUNT,
            "twilio_auth_token": TOKEN,
            "poll_interval": 0.05,
            "twilio_timeout": 2.0,
        }
        values.update(overrides)
        settings = Settings(**values)
        with (
            run_app(create_app(settings), port=port) as api_url,
            httpx.Client(base_url=api_url, timeout=10) as client,
        ):
            stack = Stack(api_url, sim_url, settings, client)
            try:
                yield stack
            finally:
                stack.db.dispose()
