"""A runtime on a test database with processes deployed, and tasks put straight into any
node: what the unit tests of the engine core (interpreter, transitions) start from."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from orchestrator.config import Settings
from orchestrator.engine.definition import ProcessDefinition
from orchestrator.engine.plugins import Plugin
from orchestrator.engine.runtime import Runtime, new_task_id
from orchestrator.services.deploy import deploy_definitions
from orchestrator.store import processes as process_store
from orchestrator.store import tasks as task_store
from orchestrator.store.records import TaskRecord


@dataclass
class Deployed:
    process_id: int
    version_id: int
    definition: ProcessDefinition


def runtime(url: str, plugins: list[Plugin[Runtime]] | None = None, **settings: Any) -> Runtime:
    return Runtime(Settings(database_url=url, **settings), plugins=plugins)


def deploy(rt: Runtime, *raws: dict[str, Any]) -> dict[str, Deployed]:
    """Deploy the definitions (in one batch); each slug's process, version and definition."""
    deploy_definitions(rt, [(raw, None) for raw in raws])
    out = {}
    with rt.db.read() as conn:
        for raw in raws:
            record = process_store.get_process(conn, raw["slug"])
            assert record is not None
            _pid, _v, definition = rt.definition(record.version_id, conn)
            out[raw["slug"]] = Deployed(record.id, record.version_id, definition)
    return out


def put_task(
    rt: Runtime,
    where: Deployed,
    node: str,
    *,
    state: str = "active",
    data: dict[str, Any] | None = None,
    **fields: Any,
) -> TaskRecord:
    """A task inserted as it would be in ``node`` (nothing run to get there)."""
    now = time.time()
    task = TaskRecord(
        id=new_task_id(),
        process_id=where.process_id,
        version_id=where.version_id,
        node_id=node,
        state=state,
        data=dict(data or {}),
        created_at=now,
        updated_at=now,
        **fields,
    )
    with rt.db.write() as conn:
        task_store.insert_task(conn, task)
    return load_task(rt, task.id)


def load_task(rt: Runtime, task_id: str) -> TaskRecord:
    with rt.db.read() as conn:
        task = task_store.get_task(conn, task_id)
    assert task is not None
    return task


def history(rt: Runtime, task_id: str) -> list[dict[str, Any]]:
    with rt.db.read() as conn:
        return task_store.history(conn, task_id)
