"""The engine process: one per SQLite file, graceful stop, lease hand-back."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from stack import ACCOUNT, TOKEN, running_stack

from orchestrator.twilio.simulator import SimulatorConfig


def _worker(db_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "ORCH_DATABASE_URL": db_url, "ORCH_POLL_INTERVAL": "0.1"}
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "worker"], env=env, stdout=out, stderr=out
        )


def test_second_engine_on_one_sqlite_file_is_refused(sqlite_url: str, tmp_path: Path) -> None:
    first = _worker(sqlite_url, tmp_path / "first.log")
    try:
        lock = Path(sqlite_url.removeprefix("sqlite:///") + ".engine.lock")
        deadline = time.time() + 20
        while not lock.exists() and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # the first one holds the lock by now
        assert first.poll() is None
        second = _worker(sqlite_url, tmp_path / "second.log")
        assert second.wait(timeout=30) == 2
        message = (tmp_path / "second.log").read_text()
        assert "another engine is already running on this SQLite database" in message
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=15) == 0  # graceful stop
    finally:
        for p in (first,):
            if p.poll() is None:
                p.kill()


def test_serve_refuses_to_start_a_second_engine(sqlite_url: str) -> None:
    from orchestrator.config import Settings
    from orchestrator.engine.lock import EngineLockError
    from orchestrator.engine.runtime import Runtime
    from orchestrator.engine.worker import Worker

    rt = Runtime(Settings(database_url=sqlite_url))
    first, second = Worker(rt), Worker(rt)
    first.acquire_lock()
    with pytest.raises(EngineLockError):
        second.acquire_lock()
    assert first._lock is not None
    first._lock.release()
    second.acquire_lock()  # free again once the first lets go
    assert second._lock is not None
    second._lock.release()
    rt.db.dispose()


def test_a_step_slower_than_its_lease_keeps_it(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The heartbeat renews the lease of a step still running (here: Twilio answering in
    4 s against a 1.5 s lease), so the step is neither taken over nor run twice. (A shorter
    lease made a heavily loaded machine miss a renewal now and then.)"""
    sim = SimulatorConfig(
        account_sid=ACCOUNT, auth_token=TOKEN, callback_delay=0.02, response_delay=4.0
    )
    with (
        running_stack(db_url, sim, lease_seconds=1.5, twilio_timeout=8.0) as stack,
        caplog.at_level(logging.WARNING, logger="orchestrator.engine"),
    ):
        done = stack.wait(stack.sms("+15551230001")["task_id"], timeout=30)
        assert done["node"]["id"] == "delivered"
        assert stack.sim_stats()["messages_created"] == 1
        left = [
            e
            for e in stack.history(done["task_id"])
            if e["node_id"] == "calling_api" and e["kind"] == "transition"
        ]
        assert len(left) == 1, left
    assert "lease lost" not in caplog.text


def _failing_at(node: str, times: int | None) -> tuple[Any, list[str]]:
    """An Interpreter.run that raises an unexpected error in ``node`` (``times`` times,
    or always), standing in for a bug in a logic."""
    from orchestrator.engine.interpreter import Interpreter

    original = Interpreter.run
    failed: list[str] = []

    async def run(self: Any, task: Any, *args: Any) -> Any:
        if task.node_id == node and (times is None or len(failed) < times):
            failed.append(task.id)
            raise RuntimeError("a bug in a logic")
        return await original(self, task, *args)

    return run, failed


def test_a_step_that_keeps_failing_is_escalated_with_its_attempts_in_history(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.engine import step_failures, worker

    monkeypatch.setattr(step_failures, "STEP_RETRY_DELAY", 0.05)
    monkeypatch.setattr(step_failures, "MAX_STEP_FAILURES", 3)
    run, failed = _failing_at("calling_api", None)
    monkeypatch.setattr(worker.Interpreter, "run", run)
    with running_stack(db_url) as stack:
        done = stack.wait(stack.sms("+15551230001")["task_id"], timeout=30)
        assert (done["outcome"], done["node"]["id"]) == ("escalation", "api_error")
        assert done["data"]["code"] == "STEP_FAILED"
        assert "3 times" in done["data"]["message"]
        failures = [e for e in stack.history(done["task_id"]) if e["kind"] == "step_failed"]
        assert [e["detail"] for e in failures] == [
            {"attempt": n, "error": "RuntimeError"} for n in (1, 2, 3)
        ]
        # Retried later each time, never in a hot loop; nothing was sent.
        assert len(failed) == 3
        assert failures[1]["at"] > failures[0]["at"]
        assert stack.sim_stats()["messages_created"] == 0


def test_a_step_that_fails_then_works_carries_on_and_forgets_its_failures(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.engine import step_failures, worker
    from orchestrator.store import tasks as task_store

    monkeypatch.setattr(step_failures, "STEP_RETRY_DELAY", 0.05)
    run, failed = _failing_at("calling_api", 2)
    monkeypatch.setattr(worker.Interpreter, "run", run)
    with running_stack(db_url) as stack:
        done = stack.wait(stack.sms("+15551230001")["task_id"], timeout=30)
        assert done["node"]["id"] == "delivered"
        assert len(failed) == 2
        kinds = [e["kind"] for e in stack.history(done["task_id"])]
        assert kinds.count("step_failed") == 2
        with stack.db.read() as conn:
            row = task_store.get_task(conn, done["task_id"])
        assert row is not None and row.failures == 0
        assert stack.sim_stats()["messages_created"] == 1
