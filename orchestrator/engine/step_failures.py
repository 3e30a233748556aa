"""A step that failed unexpectedly (a bug, a database outage): counted in the task's
history and retried after a growing delay, or escalated once it failed too often."""

from __future__ import annotations

import time

from orchestrator.engine.runtime import Runtime
from orchestrator.engine.steps import StepResult
from orchestrator.engine.transitions import commit_step
from orchestrator.store import tasks as task_store
from orchestrator.store.records import Event

# A step that failed for a reason other than a lost lease is tried again after this long,
# doubling each time up to STEP_RETRY_MAX; after MAX_STEP_FAILURES in a row it escalates.
STEP_RETRY_DELAY = 2.0
STEP_RETRY_MAX = 300.0
MAX_STEP_FAILURES = 8


def record_step_failure(rt: Runtime, owner: str, task_id: str, error: str) -> None:
    """Count the failure in the task's history; retry after a growing delay, or after
    MAX_STEP_FAILURES in a row, move the task to its escalation node (STEP_FAILED)."""
    now = time.time()
    with rt.db.write() as conn:
        task = task_store.get_task(conn, task_id, for_update=True)
        if task is None or task.lease_owner != owner or task.state != "active":
            return  # the lease went elsewhere meanwhile: that worker owns it now
        attempt = task.failures + 1
        event = Event("step_failed", task.node_id, None, {"attempt": attempt, "error": error})
        _pid, _v, definition = rt.definition(task.version_id, conn)
        if attempt >= MAX_STEP_FAILURES:
            message = f"the step failed {attempt} times in a row ({error}); see the logs"
            data = {**task.data, "error": "STEP_FAILED", "code": "STEP_FAILED"}
            data["message"] = message
            result = StepResult(data=data, to=definition.default_escalation, events=[event])
            commit_step(conn, rt, task, definition, result, owner, now)
            return
        expected = task.rev
        task.failures = attempt
        task.lease_until = now + retry_delay(attempt)
        task_store.add_events(conn, task.id, [event], now)
        task_store.save_task(conn, task, expected)


def retry_delay(attempt: int) -> float:
    return float(min(STEP_RETRY_DELAY * 2 ** (attempt - 1), STEP_RETRY_MAX))
