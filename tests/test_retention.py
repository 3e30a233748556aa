"""Purging finished tasks: only done ones past the cutoff, with everything they own."""

from __future__ import annotations

import time

from sqlalchemy import func, select

from orchestrator.config import Settings
from orchestrator.engine.deploy import ensure_shipped
from orchestrator.engine.runtime import Runtime
from orchestrator.engine.service import Service
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
    ids = [service.create_task("getting-callback", None, {"n": i})[0]["task_id"] for i in range(7)]
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
    # each purged task took its created event, its transition and its callback along
    assert _count(rt, task_events) == before[task_events] - 6
    assert _count(rt, callbacks) == before[callbacks] - 4
    with rt.db.read() as conn:
        left = {t for t in ids if task_store.get_task(conn, t) is not None}
    assert left == set(ids[3:])
    rt.db.dispose()
