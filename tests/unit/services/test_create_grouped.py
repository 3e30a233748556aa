"""Task creation grouped with others (Runtime.run_db_grouped): a taken ref met inside a
batch still answers REF_CONFLICT (on PostgreSQL the batch is then run again job by job),
an idempotent retry still finds its task, also one created earlier in the same batch,
and the other creations of the batch commit."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from deployed import deploy, runtime

from orchestrator.engine import logics
from orchestrator.engine.runtime import Runtime
from orchestrator.services import errors
from orchestrator.services.tasks import Service
from orchestrator.store import tasks as task_store

PROCESS: dict[str, Any] = {
    "slug": "waiter",
    "title": "Waiter",
    "nodes": {
        "start": {"kind": "start", "logics": [{"type": "go", "to": "waiting"}]},
        "waiting": {
            "kind": "wait",
            "logics": [{"type": "wait_callback"}, {"type": "go", "to": "done"}],
        },
        "done": {"kind": "success"},
        "oops": {"kind": "escalation"},
    },
}


@pytest.fixture
def rt(db_url: str) -> Iterator[Runtime]:
    runtime_ = runtime(db_url, plugins=[logics.plugin])
    runtime_.prepare()
    deploy(runtime_, PROCESS)
    try:
        yield runtime_
    finally:
        asyncio.run(runtime_.aclose())
        runtime_.db.dispose()


def test_creations_in_one_batch_with_a_taken_ref(rt: Runtime) -> None:
    service = Service(rt)
    asyncio.run(service.create_task("waiter", "taken", {"n": 0}))

    async def main() -> list[Any]:
        return await asyncio.gather(
            service.create_task("waiter", "a", {"n": 1}),
            service.create_task("waiter", "taken", {"n": 0}),  # an idempotent retry
            service.create_task("waiter", "taken", {"n": 2}),  # other data: a conflict
            service.create_task("waiter", "b", {"n": 3}),
            service.create_task("waiter", "b", {"n": 3}),
            return_exceptions=True,
        )

    a, retry, conflict, b, b_again = asyncio.run(main())
    assert a[1] is True and b[1] is True
    assert b_again[1] is False and b_again[0]["task_id"] == b[0]["task_id"]
    assert retry[1] is False and retry[0]["data"] == {"n": 0}
    assert isinstance(conflict, errors.Conflict) and conflict.code == "REF_CONFLICT"
    with rt.db.read() as conn:
        refs = {ref: task_store.find_by_ref(conn, 1, ref) for ref in ("a", "taken", "b")}
    assert {ref: t.data if t else None for ref, t in refs.items()} == {
        "a": {"n": 1},
        "taken": {"n": 0},
        "b": {"n": 3},
    }
    if rt.pg_group_commit is not None:
        # The conflict was raised inside the batch: it ran again alone, the others in a
        # new batch.
        assert rt.pg_group_commit.poisoned == 1 and rt.pg_group_commit.alone == 1
