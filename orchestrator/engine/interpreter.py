"""Runs one node of one task and says where the task goes next.

The interpreter does no writes of its own: it returns a ``StepResult`` (next node, new
data, tasks to copy, tasks to modify, history events) that ``transitions.commit_step``
applies in one transaction. Each logic runs in its step handler (``engine/plugins.py``);
a handler's outside call (Twilio, ``api_call``) is guarded by an effect record.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from orchestrator import secretdata
from orchestrator.engine.definition import Logic, Node, ProcessDefinition
from orchestrator.engine.logic_checks import parse_duration
from orchestrator.engine.logics import PURE_LOGICS, copy_target
from orchestrator.engine.plugins import StepHandler
from orchestrator.engine.replies import conversation
from orchestrator.engine.runtime import Runtime
from orchestrator.engine.steps import LogicFailure, NewTask, StepResult, enter_waiting
from orchestrator.engine.task_size import TASK_SIZE_OVERFLOW, oversize_part
from orchestrator.engine.templates import TemplateError, render
from orchestrator.store.records import Event, TaskRecord

# How long a call_process waits for its reply when its node has no time limit.
DEFAULT_CALL_TIMEOUT = 86400.0


def template_context(
    task: TaskRecord, data: dict[str, Any], secrets: dict[str, Any], conv_id: int
) -> dict[str, Any]:
    root = {
        "task_id": task.id,
        "ref": task.ref,
        "conv_id": conv_id,
        "node_id": task.node_id,
        "create_time": int(task.created_at),
        "change_time": int(task.updated_at),
    }
    return {**secretdata.merge(secrets, data), "root": root}


def direct_start(definition: ProcessDefinition, *, waits: bool = False) -> Node | None:
    """The node a new task of ``definition`` may be placed in at once instead of its
    start node: the target of a start node whose only logic is an unconditional ``go``
    and which has no time limit (a step there decides nothing, yet costs a claim and a
    commit). A logic or call node, or with ``waits`` a wait node (whose entry the
    caller completes: ``place_at_start``); never a delay or final node. None: the task
    starts at its start node."""
    start = definition.nodes.get(definition.start)
    if start is None or start.time_limit is not None or len(start.logics) != 1:
        return None
    logic = start.logics[0]
    if logic.type != "go" or logic.on_error is not None:
        return None
    target = definition.nodes.get(str(logic.get("to")))
    if target is None or target.is_final or target.kind in ("delay", "start"):
        return None
    if target.kind == "wait" and not waits:
        return None
    return target


def place_at_start(
    task: TaskRecord, definition: ProcessDefinition, *, waits: bool = False, looks: bool = False
) -> tuple[list[Event], tuple[str, str] | None]:
    """Put a new task (at its start node, not stored yet) where its first step would
    take it when that step decides nothing (``direct_start``), with the fields that step
    and its commit would leave. Returns the history that step would write after
    ``created``, and for a ``wait_reply`` node the conversation to listen on. Entering a
    wait node (``waits``, for a task without ref or secrets) computes its deadline as
    the step would; the caller still looks for held callbacks once the task is stored,
    as a step's commit does (none can be held). Anything the step would fail on leaves
    the task at its start node: its step fails there as before. ``looks``: a task with a
    ref may be placed in a wait node too, its caller looking for callbacks that came
    before it as engine/early.py says (before inserting it, with the ref's lock)."""
    target = direct_start(definition, waits=waits) if task.node_id == definition.start else None
    if target is None:
        return [], None
    wake_at: float | None = None
    listen: tuple[str, str] | None = None
    if target.kind == "wait":
        # A task with a ref only when its caller ``looks``: a callback for a ref may
        # come while the task is not committed yet, find no task and be kept as an
        # orphan unseen by a plain look in this same transaction (engine/early.py: the
        # look under the ref's lock; else its own step looks later, once the task is
        # visible). Without a ref nothing can be held for it: nobody knows its id yet.
        if (task.ref is not None and not looks) or task.secrets is not None:
            return [], None
        ctx = template_context(task, task.data, {}, task.process_id)
        try:
            if target.time_limit is not None:
                wake_at = Interpreter.deadline(target, ctx, task.data)
            if target.logics[0].type == "wait_reply":
                listen = conversation(target.logics[0], ctx)
        except (TemplateError, LogicFailure, ValueError):
            return [], None
        enter_waiting(task, wake_at)
    else:
        task.hops += 1
    event = Event("transition", task.node_id, target.id)
    task.node_id = target.id
    task.step += 1
    task.entry = "enter"
    return [event], listen


class Interpreter:
    """Stateless apart from the runtime it reads through."""

    def __init__(self, runtime: Runtime, handlers: Mapping[str, StepHandler]) -> None:
        self.rt = runtime
        self.handlers = handlers

    async def run(
        self,
        task: TaskRecord,
        process_id: int,
        definition: ProcessDefinition,
        *,
        careful: bool = False,
    ) -> StepResult:
        result = await self._step(task, process_id, definition, careful)
        oversize = oversize_part(result, self.rt.settings.max_task_bytes)
        if oversize is None:
            return result
        # Nothing the step built is kept (what it sent stays recorded): the task escalates
        # with its data as it was.
        limit = self.rt.settings.max_task_bytes
        fields = {
            "error": TASK_SIZE_OVERFLOW,
            "code": TASK_SIZE_OVERFLOW,
            "message": f"node {task.node_id!r}: {oversize} would be over {limit} bytes",
        }
        kept = StepResult(
            data={**task.data, **fields},
            effects_done=result.effects_done,
            account_tokens=result.account_tokens,
            events=[Event("logic_error", task.node_id, definition.default_escalation, fields)],
        )
        return self._goto(kept, definition, definition.default_escalation, task, {}, process_id)

    def run_now(
        self, task: TaskRecord, process_id: int, definition: ProcessDefinition
    ) -> StepResult | None:
        """``run`` for a task a delivery has just released, inside the delivery's
        transaction (transitions.follower), when its step only shapes its result: every
        logic left to run in its node is pure (no request, no wait, its checks made in
        the commit), so the step never suspends. None when it cannot run so: a node that
        reaches outside, or a called task (its reply is checked against its caller)."""
        node = definition.nodes.get(task.node_id)
        if (
            node is None
            or node.calls
            or task.entry != "resume"
            or task.state != "active"
            or task.reply_to is not None
        ):
            return None
        start = 1 if node.kind == "wait" else 0
        if not all(logic.type in PURE_LOGICS for logic in node.logics[start:]):
            return None
        step = self.run(task, process_id, definition)
        try:
            step.send(None)
        except StopIteration as done:
            result: StepResult = done.value
            return result
        step.close()  # it awaited after all: not here
        return None

    async def _step(
        self, task: TaskRecord, process_id: int, definition: ProcessDefinition, careful: bool
    ) -> StepResult:
        node = definition.node(task.node_id)
        data = dict(task.data)
        secrets = self._secrets(task)
        fields: dict[str, Any]
        if task.entry == "timeout" and node.time_limit is None and node.calls:
            fields = {
                "error": "rpc_timeout",
                "code": "rpc_timeout",
                "message": f"no reply from {node.logics[0].get('process')!r} in time",
            }
            return self._fail(
                StepResult(data=data),
                definition,
                node,
                node.logics[0],
                fields,
                task,
                secrets,
                process_id,
            )
        if task.entry == "timeout" and node.time_limit is not None:
            result = StepResult(data=data)
            result.events.append(Event("time_limit", node.id, node.time_limit.to))
            return self._goto(result, definition, node.time_limit.to, task, secrets, process_id)
        if node.kind in ("wait", "delay") and task.entry != "resume":
            # Entering is handled by the transition that led here; nothing to run.
            return StepResult(data=data, wake_at=task.wake_at)
        result = StepResult(data=data, careful=careful)
        if node.calls and task.entry not in ("resume", "rpc_error"):
            return await self._call(task, process_id, definition, node, secrets, result)
        if node.calls and task.entry == "rpc_error":
            fields = {k: data.get(k) for k in ("error", "code", "message")}
            return self._fail(
                result, definition, node, node.logics[0], fields, task, secrets, process_id
            )
        # Released from a wait (after wait_callback) or answered in a call node (after
        # call_process): continue with the next logic.
        start = 1 if node.kind == "wait" or node.calls else 0
        for logic in node.logics[start:]:
            ctx = template_context(task, result.data, secrets, process_id)
            try:
                target = await self._run_logic(task, process_id, logic, ctx, result)
            except TemplateError as exc:
                return self._fail(
                    result, definition, node, logic, exc.as_task_data(), task, secrets, process_id
                )
            except LogicFailure as exc:
                return self._fail(
                    result, definition, node, logic, exc.fields, task, secrets, process_id
                )
            if target is not None:
                return self._goto(result, definition, target, task, secrets, process_id)
        fields = {
            "error": "NO_EXIT",
            "code": "NO_EXIT",
            "message": f"no logic of node {node.id!r} chose a next node",
        }
        return self._fail(result, definition, node, None, fields, task, secrets, process_id)

    def _secrets(self, task: TaskRecord) -> dict[str, Any]:
        return secretdata.opened(self.rt.vault, task.secrets)

    async def _run_logic(
        self,
        task: TaskRecord,
        process_id: int,
        logic: Logic,
        ctx: dict[str, Any],
        result: StepResult,
    ) -> str | None:
        handler = self.handlers.get(logic.type)
        if handler is None:
            raise LogicFailure(
                {
                    "error": "BAD_LOGIC",
                    "code": "BAD_LOGIC",
                    "message": f"logic {logic.type!r} cannot run here",
                }
            )
        return await handler.run(task, process_id, logic, ctx, result)

    async def _call(
        self,
        task: TaskRecord,
        process_id: int,
        definition: ProcessDefinition,
        node: Node,
        secrets: dict[str, Any],
        result: StepResult,
    ) -> StepResult:
        """Run call_process: start the called task and wait in this node for its reply
        (or for the node's time limit, or the logic's ``timeout``)."""
        logic = node.logics[0]
        ctx = template_context(task, result.data, secrets, process_id)
        try:
            if logic.get("data") is not None:
                data = render(dict(logic.get("data")), ctx)
            else:
                data = dict(result.data)
            data, _hidden = secretdata.split(data)
            target = await self.rt.run_db(copy_target, self.rt, logic.get("process"), None, task, 0)
            if node.time_limit is not None:
                wake_at = self.deadline(node, ctx, result.data)
            else:
                seconds = parse_duration(logic.get("timeout", DEFAULT_CALL_TIMEOUT))
                wake_at = time.time() + float(seconds or DEFAULT_CALL_TIMEOUT)
        except TemplateError as exc:
            fields = exc.as_task_data()
            return self._fail(result, definition, node, logic, fields, task, secrets, process_id)
        except LogicFailure as exc:
            return self._fail(
                result, definition, node, logic, exc.fields, task, secrets, process_id
            )
        except ValueError as exc:
            fields = {"error": "BAD_TIME_LIMIT", "code": "BAD_TIME_LIMIT", "message": str(exc)}
            return self._fail(result, definition, node, logic, fields, task, secrets, process_id)
        reply_to = f"{task.id}:{task.step}:{node.id}"
        child = NewTask(target[0], target[1], target[2], None, data, task.id, reply_to)
        result.copies.append(child)
        result.wake_at = wake_at
        result.events.append(
            Event("call_process", node.id, None, {"process": logic.get("process")})
        )
        return result

    def _goto(
        self,
        result: StepResult,
        definition: ProcessDefinition,
        target: str,
        task: TaskRecord,
        secrets: dict[str, Any],
        process_id: int,
    ) -> StepResult:
        result.to = target
        node = definition.node(target)
        if node.kind in ("wait", "delay") and node.time_limit is not None:
            ctx = template_context(task, result.data, secrets, process_id)
            try:
                result.wake_at = self.deadline(node, ctx, result.data)
            except (TemplateError, ValueError) as exc:
                message = exc.message if isinstance(exc, TemplateError) else str(exc)
                fields = {
                    "error": "BAD_TIME_LIMIT",
                    "code": "BAD_TIME_LIMIT",
                    "message": f"time limit of node {target!r}: {message}",
                }
                result.data.update(fields)
                result.to = definition.default_escalation
                result.wake_at = None
                return result
        if node.kind == "wait" and node.logics[0].type == "wait_reply":
            ctx = template_context(task, result.data, secrets, process_id)
            try:
                result.wait_listen = conversation(node.logics[0], ctx)
            except (TemplateError, LogicFailure) as exc:
                fields = exc.as_task_data() if isinstance(exc, TemplateError) else exc.fields
                result.data.update(fields)
                result.events.append(Event("logic_error", target, definition.default_escalation))
                result.to = definition.default_escalation
                result.wake_at = None
        return result

    @staticmethod
    def deadline(node: Node, ctx: dict[str, Any], data: dict[str, Any]) -> float:
        limit = node.time_limit
        assert limit is not None
        if limit.at_param is not None and data.get(limit.at_param) is not None:
            return float(data[limit.at_param])
        after = limit.after
        if isinstance(after, str):
            seconds = parse_duration(render(after, ctx))
            if seconds is None:
                raise ValueError(f"{after!r} is not a duration")
            after = seconds
        if after is None:
            raise ValueError(f"the task has no {limit.at_param!r} parameter")
        return time.time() + float(after)

    def _fail(
        self,
        result: StepResult,
        definition: ProcessDefinition,
        node: Node,
        logic: Logic | None,
        fields: dict[str, Any],
        task: TaskRecord,
        secrets: dict[str, Any],
        process_id: int,
    ) -> StepResult:
        target = (logic.on_error if logic else None) or node.on_error
        target = target or definition.default_escalation
        result.data.update(fields)
        detail = {"logic": logic.type if logic else None, **fields}
        result.events.append(Event("logic_error", node.id, target, detail))
        return self._goto(result, definition, target, task, secrets, process_id)
