"""The engine process: one per SQLite file, graceful stop, lease hand-back."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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
    from orchestrator.engine.runtime import Runtime
    from orchestrator.engine.worker import EngineLockError, Worker

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
    2.5 s against a 0.9 s lease), so the step is neither taken over nor run twice."""
    sim = SimulatorConfig(
        account_sid=ACCOUNT, auth_token=TOKEN, callback_delay=0.02, response_delay=2.5
    )
    with (
        running_stack(db_url, sim, lease_seconds=0.9, twilio_timeout=6.0) as stack,
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
