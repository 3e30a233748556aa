"""Repair by an operator (SPEC §7): retry a task from a node, cancel it, move it, and the
same for the tasks of one node in bounded batches.

Each action on a task is one transaction, recorded in the task's history with who did it
(``retried`` / ``moved`` / ``cancelled`` events, ``by`` = the audit source). It is safe
with engines running:
- a task an engine is running (active, lease not expired) is refused (TASK_RUNNING):
  the step in flight finishes or its lease runs out first, so no step is cut in half;
- every write checks the task's ``rev``: a callback or step that landed meanwhile wins
  and the action answers TASK_CHANGED, changing nothing;
- retry and move make the task ``active`` at the target node with no lease: an engine
  claims it as any new work, and runs the node's logics from the top, under a new step
  number (so its sends are new sends);
- a retry without a named node is refused (ALREADY_SENT) when the node it would run again
  already sent something (a Twilio create that got a sid, or whose outcome is unknown, or
  a non-idempotent api_call): running it again would send again. Naming the node
  explicitly is the operator saying "send again".
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy import Connection

from orchestrator.engine.definition import ProcessDefinition
from orchestrator.engine.steps import Conflict, StepResult
from orchestrator.engine.transitions import commit_step
from orchestrator.services import errors
from orchestrator.services.tasks import Service
from orchestrator.store import effects as effect_store
from orchestrator.store import tasks as task_store
from orchestrator.store.notify import notify
from orchestrator.store.records import Event, TaskRecord
from orchestrator.store.savepoint import all_or_nothing

ACTIONS = ("retry", "cancel", "move")
CANCELLED = "CANCELLED"
# Keys of the engine's error convention: cleared by a retry (kept in the event).
ERROR_KEYS = ("error", "code", "message", "url_more_info")
BULK_BATCH = 100  # tasks per transaction
BULK_MAX = 1000  # tasks examined per bulk request
_UNKNOWN = ("TWILIO_OUTCOME_UNKNOWN", "api_outcome_unknown")
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class Repair:
    def __init__(self, service: Service) -> None:
        self.service = service
        self.rt = service.rt

    # -- one task --------------------------------------------------------------------
    async def act(self, action: str, task_id: str, *, who: str, **params: Any) -> dict[str, Any]:
        """Apply ``action`` (retry|cancel|move) to one task; its view afterwards."""
        _check_action(action)
        view = await self.rt.run_db(self._act, action, task_id, who, params)
        self.rt.wake()
        return view

    def _act(self, action: str, task_id: str, who: str, params: dict[str, Any]) -> dict[str, Any]:
        now = time.time()
        with self.rt.db.write() as conn:
            task = task_store.get_task(conn, task_id, for_update=True)
            if task is None:
                raise errors.NotFound("TASK_NOT_FOUND", f"no task {task_id!r}")
            self._apply(conn, task, action, who, now, **params)
            notify(conn)
            return self.service.task_view(conn, task)

    def _apply(
        self,
        conn: Connection,
        task: TaskRecord,
        action: str,
        who: str,
        now: float,
        *,
        node: str | None = None,
        reason: str | None = None,
    ) -> None:
        if task.state == "active" and task.lease_owner and (task.lease_until or 0) > now:
            raise errors.Conflict(
                "TASK_RUNNING",
                f"an engine is running task {task.id} (its lease ends in "
                f"{(task.lease_until or now) - now:.0f} s); try again when the step is over",
            )
        _pid, _v, definition = self.rt.definition(task.version_id, conn)
        if node is not None and node not in definition.nodes:
            raise errors.Invalid("INVALID_NODE", f"the process has no node {node!r}")
        if action == "cancel":
            self._cancel(conn, task, definition, who, now, node, reason)
            return
        if action == "move":
            if node is None:
                raise errors.Invalid("MISSING_NODE", "move needs a node")
            if task.state == "done":
                raise errors.Conflict(
                    "TASK_FINISHED", f"task {task.id} is finished: retry it from a node"
                )
            self._restart(conn, task, definition, node, "moved", {"by": who}, now)
            return
        detail: dict[str, Any] = {"by": who}
        if node is None:
            node = self._default_node(conn, task)
            sent = self._sent_at(conn, task)
            if sent:
                raise errors.Conflict(
                    "ALREADY_SENT",
                    f"node {node!r} already sent {', '.join(s['what'] for s in sent)}; "
                    f"running it again sends again. To do that, retry from it explicitly "
                    f'({{"node": "{node}"}}); or retry from a later node',
                    {"node": node, "sent": sent},
                )
        else:
            detail["explicit"] = True
        cleared = {k: task.data.pop(k) for k in ERROR_KEYS if k in task.data}
        if cleared:
            detail["cleared"] = cleared
        self._restart(conn, task, definition, node, "retried", detail, now)

    def _restart(
        self,
        conn: Connection,
        task: TaskRecord,
        definition: ProcessDefinition,
        target: str,
        kind: str,
        detail: dict[str, Any],
        now: float,
    ) -> None:
        """Make the task runnable at ``target``: the next engine to claim it runs the
        node's logics from the top, under a new step number."""
        if definition.node(target).is_final:
            raise errors.Invalid(
                "INVALID_NODE",
                f"{target!r} is a final node: a task cannot run there (cancel ends a task)",
            )
        expected, source = task.rev, task.node_id
        task.node_id, task.state, task.entry, task.outcome = target, "active", "enter", None
        task.finished_at = task.wake_at = task.lease_owner = task.lease_until = None
        task.failures = task.hops = 0
        task.step += 1
        task.updated_at = now
        try:
            saved = task_store.save_task_unique(conn, task, expected)
        except task_store.RefTaken as exc:
            raise errors.Conflict(
                "REF_CONFLICT",
                f"another unfinished task has ref {task.ref!r}: finish it first",
            ) from exc
        if not saved:
            raise _changed(task.id)
        task_store.add_events(conn, task.id, [Event(kind, source, target, detail)], now)

    def _cancel(
        self,
        conn: Connection,
        task: TaskRecord,
        definition: ProcessDefinition,
        who: str,
        now: float,
        node: str | None,
        reason: str | None,
    ) -> None:
        if task.state == "done":
            raise errors.Conflict("TASK_FINISHED", f"task {task.id} is already finished")
        target = node or definition.default_escalation
        if definition.node(target).kind not in ("escalation", "error"):
            raise errors.Invalid("INVALID_NODE", f"{target!r} is not an escalation node")
        message = reason or f"cancelled by {who}"
        data = {**task.data, "error": CANCELLED, "code": CANCELLED, "message": message}
        event = Event("cancelled", task.node_id, target, {"by": who, "reason": reason})
        result = StepResult(data=data, to=target, events=[event])
        # commit_step finishes the task as the engine would (history, late callbacks, the
        # reply a caller waits for); callers it releases are left for any engine to claim.
        owner = f"repair:{uuid.uuid4().hex[:12]}"
        try:
            commit_step(conn, self.rt, task, definition, result, owner, now)
        except Conflict as exc:
            raise _changed(task.id) from exc
        task_store.release_leases(conn, owner)

    def _default_node(self, conn: Connection, task: TaskRecord) -> str:
        """Where a retry starts: the node that led to the final node, or the current one."""
        if task.state != "done":
            return task.node_id
        return task_store.last_source(conn, task.id, task.node_id) or task.node_id

    def _sent_at(self, conn: Connection, task: TaskRecord) -> list[dict[str, Any]]:
        """What the default node's last run sent (or may have): its effect records."""
        step = task.step - 1 if task.state == "done" else task.step
        out = []
        for e in effect_store.at_step(conn, task.id, step):
            result, request = e["result"] or {}, e["request"] or {}
            if str(request.get("method", "")).upper() in _SAFE_METHODS:
                continue
            error = result.get("error") if e["status"] == "done" else None
            if isinstance(error, dict) and error.get("code") not in _UNKNOWN:
                continue  # refused: nothing went out
            sid = (result.get("message") or {}).get("sid") if "message" in result else None
            if sid:
                what = f"{e['kind']} {sid}"
            elif e["status"] != "done" or error:
                what = f"{e['kind']} (outcome unknown)"
            else:
                what = str(e["kind"])
            out.append({"kind": e["kind"], "sid": sid, "what": what})
        return out

    # -- a node's tasks ----------------------------------------------------------------
    async def bulk(
        self,
        process_key: str,
        node_id: str,
        action: str,
        *,
        who: str,
        limit: int = BULK_MAX,
        cursor: str | None = None,
        node: str | None = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        """Apply ``action`` to the tasks in ``node_id``, newest first, at most ``limit``
        of them, BULK_BATCH per transaction. Tasks it may not touch (running, already
        sent, ...) are skipped and counted by reason; ``next_cursor`` continues."""
        _check_action(action)
        if not 1 <= limit <= BULK_MAX:
            raise errors.Invalid("INVALID_LIMIT", f"limit must be 1-{BULK_MAX}")
        view = await self.service.process_view(process_key)
        if node_id not in {n["id"] for n in view["nodes"]}:
            raise errors.NotFound("NODE_NOT_FOUND", f"{view['slug']} has no node {node_id!r}")
        touched, examined = 0, 0
        skipped: dict[str, int] = {}
        examples: list[dict[str, str]] = []
        next_cursor = cursor
        while examined < limit:
            page = await self.service.list_tasks(
                view["slug"],
                node=node_id,
                limit=min(BULK_BATCH, limit - examined),
                cursor=next_cursor,
            )
            ids = [t["task_id"] for t in page["tasks"]]
            examined += len(ids)
            done, refused = await self.rt.run_db(
                self._batch, ids, node_id, action, who, node, reason
            )
            self.rt.wake()
            touched += done
            for task_id, code in refused:
                skipped[code] = skipped.get(code, 0) + 1
                if len(examples) < 10:
                    examples.append({"task_id": task_id, "code": code})
            next_cursor = page["next_cursor"]
            if next_cursor is None:
                break
        return {
            "action": action,
            "process": view["slug"],
            "node": node_id,
            "touched": touched,
            "skipped": skipped,
            "examples": examples,
            "next_cursor": next_cursor if examined >= limit else None,
        }

    def _batch(
        self,
        ids: list[str],
        node_id: str,
        action: str,
        who: str,
        node: str | None,
        reason: str | None,
    ) -> tuple[int, list[tuple[str, str]]]:
        """Apply ``action`` to the tasks still in ``node_id``, in one transaction: how
        many it was applied to, and the (task id, error code) of each refused one."""
        done, refused = 0, []
        now = time.time()
        with self.rt.db.write() as conn:
            for task_id in ids:
                task = task_store.get_task(conn, task_id, for_update=True)
                if task is None or task.node_id != node_id:
                    continue  # moved on meanwhile
                try:
                    with all_or_nothing(conn):
                        self._apply(conn, task, action, who, now, node=node, reason=reason)
                    done += 1
                except errors.ServiceError as err:
                    refused.append((task_id, err.code))
            notify(conn)
        return done, refused


def _check_action(action: str) -> None:
    if action not in ACTIONS:
        raise errors.NotFound("NOT_FOUND", f"no repair action {action!r}")


def _changed(task_id: str) -> errors.ServiceError:
    return errors.Conflict(
        "TASK_CHANGED", f"task {task_id} changed meanwhile (a callback or a step); reload"
    )
