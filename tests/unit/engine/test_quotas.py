"""Quotas stop a process that creates tasks without end: a chain's depth and its size,
server-wide (ORCH_MAX_TASK_DEPTH, ORCH_MAX_CHAIN_TASKS) or per process (``limits``)."""

from __future__ import annotations

import time
from typing import Any

import httpx
from sqlalchemy import func, select
from stack import Stack, running_stack

from orchestrator.store.tables import tasks


def _self_copying(slug: str, copies: int, **limits: int) -> dict[str, Any]:
    """A process whose every task copies itself ``copies`` times, then ends."""
    logics: list[dict[str, Any]] = [{"type": "copy_task", "process": slug}] * copies
    definition: dict[str, Any] = {
        "slug": slug,
        "title": slug,
        "nodes": {
            "start": {
                "kind": "start",
                "title": "Start",
                "on_error": "stopped",
                "logics": [*logics, {"type": "go", "to": "done"}],
            },
            "done": {"kind": "success", "title": "Done"},
            "stopped": {"kind": "escalation", "title": "Stopped"},
        },
    }
    if limits:
        definition["limits"] = limits
    return definition


def _settled(stack: Stack, slug: str) -> list[dict[str, Any]]:
    """Every task of ``slug`` once none is left running (bounded wait)."""
    process_id = stack.client.get(f"/api/v1/processes/{slug}").json()["conv_id"]
    deadline = time.time() + 30
    while True:
        with stack.db.read() as conn:
            rows = conn.execute(
                select(tasks.c.id, tasks.c.state, tasks.c.generation, tasks.c.data).where(
                    tasks.c.process_id == process_id
                )
            ).all()
        if rows and all(r.state == "done" for r in rows):
            return [{"id": r.id, "generation": r.generation, "data": r.data} for r in rows]
        assert time.time() < deadline, f"{len(rows)} tasks, still running"
        assert len(rows) < 5000, "the quota did not stop it"
        time.sleep(0.1)


def test_a_task_copying_itself_stops_at_the_depth_quota(db_url: str) -> None:
    with running_stack(db_url) as stack:  # the default depth quota: 32
        stack.deploy(_self_copying("copy-me", 1))
        root = stack.create({"n": 1}, process="copy-me")
        rows = _settled(stack, "copy-me")
        assert len(rows) == 33  # generations 0 to 32
        assert sorted(r["generation"] for r in rows) == list(range(33))
        last = next(r for r in rows if r["generation"] == 32)
        task = stack.task(last["id"])
        assert (task["outcome"], task["node"]["id"]) == ("escalation", "stopped")
        assert task["data"]["code"] == "TASK_QUOTA_EXCEEDED"
        assert "depth quota of 32" in task["data"]["message"]
        assert stack.task(root["task_id"])["outcome"] == "success"
        errors = [e for e in stack.history(last["id"]) if e["kind"] == "logic_error"]
        assert errors[0]["detail"]["error"] == "TASK_QUOTA_EXCEEDED"


def test_a_task_forking_itself_stops_at_the_chain_quota(db_url: str) -> None:
    with running_stack(db_url, max_chain_tasks=60, engine_concurrency=8) as stack:
        stack.deploy(_self_copying("fork-me", 2))
        stack.create({"n": 1}, process="fork-me")
        rows = _settled(stack, "fork-me")
        # Steps of one chain running at once (the engine runs at most 2 x 8 here) may each
        # create their two before seeing the others': a bounded overshoot, never a runaway.
        assert 60 <= len(rows) <= 60 + 2 * (2 * 8), len(rows)
        stopped = [stack.task(r["id"]) for r in rows if r["data"] and "TASK_QUOTA" in r["data"]]
        assert stopped and all(t["data"]["code"] == "TASK_QUOTA_EXCEEDED" for t in stopped)
        assert "quota is 60" in stopped[0]["data"]["message"]
        assert httpx.get(f"{stack.api}/healthz").status_code == 200
        # Another chain starts afresh: the quota is per chain, not per process.
        stack.create({"n": 2}, process="fork-me")
        assert len(_settled(stack, "fork-me")) >= 2 * 60


def test_a_process_file_sets_its_own_quotas(db_url: str) -> None:
    with running_stack(db_url) as stack:
        stack.deploy(_self_copying("short-chain", 1, depth=3))
        stack.create({}, process="short-chain")
        rows = _settled(stack, "short-chain")
        assert len(rows) == 4
        last = next(r for r in rows if r["generation"] == 3)
        assert stack.task(last["id"])["data"]["code"] == "TASK_QUOTA_EXCEEDED"
        with stack.db.read() as conn:
            assert conn.execute(select(func.count()).select_from(tasks)).scalar_one() == 4


def test_a_forking_chain_never_grows_the_engines_running_set_past_its_concurrency(
    db_url: str,
) -> None:
    """Copies a step makes run at once only while the engine has room; the rest wait
    their turn in the claim order (a fork bomb under its quota used to grow the running
    set, and memory, without bound and starve older work). Stopping stays prompt."""
    import asyncio

    from orchestrator.config import Settings
    from orchestrator.engine.runtime import Runtime
    from orchestrator.engine.worker import Worker
    from orchestrator.services.deploy import deploy_definitions
    from orchestrator.services.tasks import Service

    rt = Runtime(Settings(database_url=db_url, max_chain_tasks=100000, poll_interval=0.05))
    deploy_definitions(rt, [(_self_copying("fork-me", 2), None)])
    asyncio.run(Service(rt).create_task("fork-me", None, {}))
    sizes: list[int] = []

    async def run_engine() -> float:
        worker = Worker(rt, concurrency=8)
        runner = asyncio.create_task(worker.run())
        for _ in range(150):  # 1.5 s of an exponentially growing chain
            await asyncio.sleep(0.01)
            sizes.append(len(worker._running))
        began = time.monotonic()
        await asyncio.wait_for(worker.stop(), 30)
        await runner
        return time.monotonic() - began

    asyncio.run(run_engine())
    with rt.db.read() as conn:
        created = conn.execute(select(func.count()).select_from(tasks)).scalar_one()
        leased = conn.execute(
            select(func.count()).select_from(tasks).where(tasks.c.lease_owner.is_not(None))
        ).scalar_one()
    rt.db.dispose()
    assert created > 100  # the chain did grow while the engine ran
    assert max(sizes) <= 2 * 8, max(sizes)  # OVERFLOW x concurrency
    assert leased == 0  # every lease given back on stop


def test_serve_stops_on_sigterm_while_a_chain_forks(tmp_path: Any, sqlite_url: str) -> None:
    """SIGTERM under the load of a forking chain (quota raised out of the way): the
    server stops gracefully (its leases given back) long before anyone reaches for -9."""
    import json
    import os
    import signal
    import subprocess
    import sys

    from orchestrator.servers import free_port

    definition = tmp_path / "fork-me.json"
    definition.write_text(json.dumps(_self_copying("fork-me", 2)))
    port = free_port()
    env = {
        **os.environ,
        "ORCH_DATABASE_URL": sqlite_url,
        "ORCH_MAX_CHAIN_TASKS": "10000000",
        "ORCH_MAX_TASK_DEPTH": "10000",
    }
    cli = [sys.executable, "-m", "orchestrator"]
    log = open(tmp_path / "serve.log", "wb")
    server = subprocess.Popen([*cli, "serve", "--port", str(port)], env=env, stdout=log, stderr=log)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 30
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                assert time.time() < deadline and server.poll() is None, "serve did not start"
                time.sleep(0.1)
        subprocess.run([*cli, "deploy", str(definition)], env=env, check=True, capture_output=True)
        r = httpx.post(f"{base}/api/v1/processes/fork-me/tasks", json={"data": {}}, timeout=10)
        assert r.status_code == 201, r.text
        time.sleep(2.0)  # the chain doubles every generation meanwhile
        assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200
        server.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal once it has shut down gracefully.
        assert server.wait(timeout=20) in (0, -signal.SIGTERM)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        log.close()
    assert "Application shutdown complete" in (tmp_path / "serve.log").read_text()
    from orchestrator.store.db import Database

    db = Database(sqlite_url)
    with db.read() as conn:
        created = conn.execute(select(func.count()).select_from(tasks)).scalar_one()
        leased = conn.execute(
            select(func.count()).select_from(tasks).where(tasks.c.lease_owner.is_not(None))
        ).scalar_one()
    db.dispose()
    assert created > 100  # it was busy
    assert leased == 0  # the engine stopped cleanly and gave every lease back
