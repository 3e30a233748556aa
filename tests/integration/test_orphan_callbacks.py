"""Callbacks that never find a task (orphans) are bounded: deleted after a short lifetime,
the oldest beyond a cap at once, in batches that do not stop at a fixed number a minute,
and counted in /metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Connection, func, insert, select

from orchestrator.config import Settings
from orchestrator.engine.orphans import BATCH, OrphanSweeper
from orchestrator.engine.runtime import Runtime
from orchestrator.store import callbacks as inbox
from orchestrator.store.tables import callbacks

TTL = 600.0
CAP = 1500


@pytest.fixture
def rt(db_url: str) -> Iterator[Runtime]:
    runtime = Runtime(
        Settings(database_url=db_url, orphan_callback_ttl=TTL, orphan_callback_max=CAP)
    )
    yield runtime
    runtime.db.dispose()


def _rows(n: int, at: float, status: str = "pending", **extra: object) -> list[dict[str, object]]:
    return [
        {
            "process_id": 1,
            "node_id": "wait",
            "form": "json",
            "ref": f"r{at}-{i}",
            "payload": "{}",
            "received_at": at,
            "status": status,
            **extra,
        }
        for i in range(n)
    ]


def test_old_orphans_and_those_beyond_the_cap_are_purged(rt: Runtime) -> None:
    now = time.time()
    old, fresh = 1200, 2000  # more than one batch of each
    assert old > BATCH
    with rt.db.write() as conn:
        conn.execute(insert(callbacks), _rows(old, now - 2 * TTL))
        # Not orphans: matched to a task (waiting for it to reach its node), or settled.
        conn.execute(insert(callbacks), _rows(3, now - 2 * TTL, task_id="t" * 24))
        conn.execute(insert(callbacks), _rows(3, now - 2 * TTL, applied_task_id="t" * 24))
        conn.execute(insert(callbacks), _rows(3, now - 2 * TTL, status="applied"))
        conn.execute(insert(callbacks), _rows(fresh, now - 1))
        newest = conn.execute(select(func.max(callbacks.c.id))).scalar_one()
    sweeper = OrphanSweeper(rt)
    purged = asyncio.run(sweeper.sweep_once())
    assert purged == old + (fresh - CAP) == sweeper.purged
    with rt.db.read() as conn:
        assert inbox.orphan_count(conn) == CAP
        kept = conn.execute(select(func.count()).select_from(callbacks)).scalar_one()
        assert kept == CAP + 9
        # The newest orphans are the ones kept (the likeliest to find their task).
        oldest_kept = conn.execute(
            select(func.min(callbacks.c.id)).where(callbacks.c.received_at > now - TTL)
        ).scalar_one()
        assert oldest_kept == newest - CAP + 1
    assert asyncio.run(sweeper.sweep_once()) == 0
    assert sweeper.purged == purged

    def read(fn: Callable[[Connection], object]) -> object:
        with rt.db.read() as conn:
            return fn(conn)

    rt.metrics.track_database(read, lambda: None)
    samples = {
        s.name: s.value
        for family in text_string_to_metric_families(rt.metrics.render().decode())
        for s in family.samples
    }
    assert samples["orchestrator_orphan_callbacks"] == CAP
    assert samples["orchestrator_orphan_callbacks_purged_total"] == purged


def test_orphan_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings.from_env().orphan_callback_ttl == 3600.0
    monkeypatch.setenv("ORCH_ORPHAN_CALLBACK_TTL", "120")
    monkeypatch.setenv("ORCH_ORPHAN_CALLBACK_MAX", "50")
    settings = Settings.from_env()
    assert (settings.orphan_callback_ttl, settings.orphan_callback_max) == (120.0, 50)
