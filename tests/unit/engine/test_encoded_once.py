"""A step's data is JSON-encoded once (issue 14): the size check keeps the text it
measured (``data_text``) and the commit writes that text, unless it changed the data."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from deployed import Deployed, deploy, put_task, runtime
from sqlalchemy import select

from orchestrator.engine import logics
from orchestrator.engine.runtime import Runtime
from orchestrator.engine.steps import NewTask, StepResult
from orchestrator.engine.task_size import oversize_part
from orchestrator.engine.transitions import commit_step
from orchestrator.store import tasks as task_store
from orchestrator.store.records import TaskRecord, dumps
from orchestrator.store.tables import tasks

OWNER = "test-worker"
PROCESS: dict[str, Any] = {
    "slug": "encoded",
    "title": "Encoded",
    "nodes": {
        "start": {"kind": "start", "logics": [{"type": "go", "to": "work"}]},
        "work": {"logics": [{"type": "go", "to": "done"}]},
        "done": {"kind": "success"},
        "oops": {"kind": "escalation"},
    },
}


@pytest.fixture
def world(db_url: str) -> Iterator[tuple[Runtime, Deployed]]:
    rt = runtime(db_url, plugins=[logics.plugin])
    rt.prepare()
    try:
        yield rt, deploy(rt, PROCESS)["encoded"]
    finally:
        rt.db.dispose()


def _stored_text(rt: Runtime, task_id: str) -> str:
    with rt.db.read() as conn:
        return str(conn.execute(select(tasks.c.data).where(tasks.c.id == task_id)).scalar_one())


def _commit(rt: Runtime, where: Deployed, task: TaskRecord, result: StepResult) -> None:
    with rt.db.write() as conn:
        commit_step(conn, rt, task, where.definition, result, OWNER, time.time())


def test_the_size_check_keeps_the_texts_it_measured() -> None:
    copy = NewTask(1, 1, "start", None, {"c": "é"}, "parent")
    result = StepResult(data={"a": 1, "b": "ü"}, copies=[copy])
    assert oversize_part(result, 1000) is None
    assert result.data_text == dumps(result.data) and copy.data_text == dumps(copy.data)


@pytest.mark.parametrize("chars", [5, 6, 7])
def test_the_limit_is_in_bytes_as_stored(chars: int) -> None:
    """'é' is 2 bytes in UTF-8: {"a":"éééééé"} is 8 + 12 = 20 bytes."""
    result = StepResult(data={"a": "é" * chars})
    size = len(dumps(result.data).encode())
    assert oversize_part(result, 20) == ("the task's data" if size > 20 else None)
    assert oversize_part(StepResult(data={"a": "é" * chars}), size) is None
    assert oversize_part(StepResult(data={"a": "é" * chars}), size - 1) == "the task's data"


def test_the_commit_writes_the_text_the_size_check_made(
    world: tuple[Runtime, Deployed],
) -> None:
    rt, where = world
    task = put_task(rt, where, "work", lease_owner=OWNER, lease_until=time.time() + 30)
    result = StepResult(data={"a": 1}, to="done")
    # The same data, spelled otherwise than dumps() would: written as it is, not encoded.
    result.data_text = '{"a": 1}'
    child = NewTask(where.process_id, where.version_id, "work", None, {"c": 2}, task.id)
    child.data_text = '{"c": 2}'
    result.copies.append(child)
    _commit(rt, where, task, result)
    assert _stored_text(rt, task.id) == '{"a": 1}'
    with rt.db.read() as conn:
        [created] = task_store.children(conn, task.id)
    assert _stored_text(rt, created.id) == '{"c": 2}' and created.data == {"c": 2}


def test_data_the_commit_changes_is_encoded_again(world: tuple[Runtime, Deployed]) -> None:
    """A secret-named value is kept apart from the data: the size check's text had it."""
    rt, where = world
    task = put_task(rt, where, "work", lease_owner=OWNER, lease_until=time.time() + 30)
    result = StepResult(data={"a": 1, "AuthToken": "hush"}, to="done")
    assert oversize_part(result, 1000) is None and "hush" in (result.data_text or "")
    _commit(rt, where, task, result)
    assert _stored_text(rt, task.id) == dumps({"a": 1})
