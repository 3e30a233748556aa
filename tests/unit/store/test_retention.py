"""Purging finished tasks: only done ones past the cutoff, with everything they own."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import func, select

from orchestrator.config import Settings
from orchestrator.engine.runtime import Runtime
from orchestrator.services.deploy import ensure_shipped
from orchestrator.services.tasks import Service
from orchestrator.store import callbacks as inbox
from orchestrator.store import tasks as task_store
from orchestrator.store.records import Event
from orchestrator.store.retention import purge_batch
from orchestrator.store.tables import callbacks, task_events, tasks


def _count(rt: Runtime, table: object) -> int:
    with rt.db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_purge_removes_only_old_finished_tasks(db_url: str) -> None:
    rt = Runtime(Settings(database_url=db_url))
    ensure_shipped(rt)
    service = Service(rt)
    ids = [
        asyncio.run(service.create_task("getting-callback", None, {"n": i}))[0]["task_id"]
        for i in range(7)
    ]
    now = time.time()
    with rt.db.write() as conn:
        for i, task_id in enumerate(ids[:5]):  # five finished: three long ago, two just now
            task = task_store.get_task(conn, task_id)
            assert task is not None
            task.state, task.outcome = "done", "success"
            task.finished_at = now - (40 * 86400 if i < 3 else 10)
            assert task_store.save_task(conn, task, task.rev)
            task_store.add_events(conn, task_id, [Event("transition", "a", "b")], now)
            inbox.insert_callback(
                conn,
                process_id=task.process_id,
                node_id="*",
                form="json",
                payload={},
                received_at=now,
                task_id=task_id,
            )
        stray = inbox.insert_callback(
            conn,
            process_id=1,
            node_id="*",
            form="json",
            payload={},
            received_at=now - 40 * 86400,
            ref="nobody",
        )
        assert stray is not None
        inbox.set_status(conn, stray, "pending", now=now)
    before = {t: _count(rt, t) for t in (tasks, task_events, callbacks)}
    cutoff = now - 30 * 86400
    with rt.db.write() as conn:
        assert purge_batch(conn, cutoff, 2) == 2  # batches are bounded
    with rt.db.write() as conn:
        assert purge_batch(conn, cutoff, 2) == 1
    with rt.db.write() as conn:
        assert purge_batch(conn, cutoff, 2) == 0
    assert _count(rt, tasks) == before[tasks] - 3
    # each purged task took its events along (created, start -> waiting_for_callback as
    # placed at creation, the transition above) and its callback
    assert _count(rt, task_events) == before[task_events] - 9
    assert _count(rt, callbacks) == before[callbacks] - 4
    with rt.db.read() as conn:
        left = {t for t in ids if task_store.get_task(conn, t) is not None}
    assert left == set(ids[3:])
    rt.db.dispose()


def _finished_tasks(rt: Runtime, ages: list[float]) -> list[str]:
    """Finished tasks, each finished ``age`` seconds ago."""
    service = Service(rt)
    ids = [
        asyncio.run(service.create_task("getting-callback", None, {"n": i}))[0]["task_id"]
        for i in ages
    ]
    now = time.time()
    with rt.db.write() as conn:
        for task_id, age in zip(ids, ages, strict=True):
            task = task_store.get_task(conn, task_id)
            assert task is not None
            task.state, task.outcome, task.finished_at = "done", "success", now - age
            assert task_store.save_task(conn, task, task.rev)
    return ids


def _left_after_engine_ran(db_url: str, days: float, ages: list[float]) -> list[bool]:
    """Run a real engine (its background retention job included) for a moment; which
    of the tasks finished ``ages`` seconds ago are still there?"""
    import asyncio

    from orchestrator.engine.worker import Worker

    rt = Runtime(Settings(database_url=db_url, retention_days=days, poll_interval=0.05))
    ensure_shipped(rt)
    ids = _finished_tasks(rt, ages)

    async def run_engine() -> None:
        worker = Worker(rt)
        runner = asyncio.create_task(worker.run())
        await asyncio.sleep(1.0)  # the job's first pass runs as the engine starts
        await worker.stop()
        await runner

    asyncio.run(run_engine())
    with rt.db.read() as conn:
        left = [task_store.get_task(conn, t) is not None for t in ids]
    rt.db.dispose()
    return left


DAY = 86400.0


def test_the_engines_retention_job_purges_after_days_not_seconds(db_url: str) -> None:
    # 40 days ago: purged; 10 days and one minute ago: kept (30 days is not 30 seconds).
    assert _left_after_engine_ran(db_url, 30, [40 * DAY, 10 * DAY, 60]) == [False, True, True]


def test_the_engines_retention_job_with_zero_days_keeps_everything(db_url: str) -> None:
    assert _left_after_engine_ran(db_url, 0, [400 * DAY, 40 * DAY, 60]) == [True, True, True]
