"""Runs one node of one task and says where the task goes next.

The interpreter does no writes of its own: it returns a ``StepResult`` (next node, new
data, tasks to copy, tasks to modify, history events) that ``transitions.commit_step``
applies in one transaction. The only outside call it makes is a Twilio request, and that
is guarded by an effect record (see ``twilio_actions``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from orchestrator import secretdata
from orchestrator.engine.conditions import all_match
from orchestrator.engine.definition import Logic, Node, ProcessDefinition, parse_duration
from orchestrator.engine.task_size import TASK_SIZE_OVERFLOW, oversize_part
from orchestrator.engine.templates import TemplateError, render
from orchestrator.store.records import Event, TaskRecord

LOOP_LIMIT = 50
# How long a call_process waits for its reply when its node has no time limit.
DEFAULT_CALL_TIMEOUT = 86400.0


class StepDeferred(Exception):
    """The step cannot run yet (another worker may still be finishing it): try again at
    ``until``, keeping the lease meanwhile."""

    def __init__(self, until: float, reason: str) -> None:
        super().__init__(reason)
        self.until = until


class LogicFailure(Exception):
    """A logic failed: the task goes to the error path with these fields."""

    def __init__(self, fields: dict[str, Any]) -> None:
        super().__init__(fields.get("message", ""))
        self.fields = fields


@dataclass
class NewTask:
    process_id: int
    version_id: int
    start: str
    ref: str | None
    data: dict[str, Any]
    parent_task_id: str
    reply_to: str | None = None  # set by call_process: "task_id:step:node_id"


@dataclass
class Reply:
    """What a called task sends back to its caller (the ``reply`` logic)."""

    data: dict[str, Any]
    exception: bool = False


@dataclass
class Modification:
    process_id: int
    task_id: str
    data: dict[str, Any]


@dataclass
class StepResult:
    data: dict[str, Any]
    to: str | None = None  # None: the task stays in its node, waiting
    wake_at: float | None = None  # when the target (or current) node's time limit fires
    events: list[Event] = field(default_factory=list)
    copies: list[NewTask] = field(default_factory=list)
    modifications: list[Modification] = field(default_factory=list)
    effects_done: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    account_tokens: dict[str, str] = field(default_factory=dict)
    reply: Reply | None = None
    # Two-way SMS: (person's number, our number) to listen on from this step's commit
    # (expect_reply), or once the task waits in the wait_reply node it enters.
    listen: tuple[str, str] | None = None
    wait_listen: tuple[str, str] | None = None


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


def conversation(logic: Logic, ctx: dict[str, Any]) -> tuple[str, str]:
    """(the person's number, our number) of an expect_reply or wait_reply logic."""
    from orchestrator.engine.replies import conversation_pair

    try:
        return conversation_pair(render(logic.get("from"), ctx), render(logic.get("to"), ctx))
    except ValueError as exc:
        fields = {"error": "BAD_CONVERSATION", "code": "BAD_CONVERSATION"}
        raise LogicFailure({**fields, "message": f"{logic.type}: {exc}"}) from exc


class Interpreter:
    """Stateless apart from the runtime it reads through."""

    def __init__(self, runtime: Any, twilio_actions: Any, api_calls: Any = None) -> None:
        from orchestrator.engine.api_call import ApiCalls

        self.rt = runtime
        self.twilio = twilio_actions
        self.api = api_calls or ApiCalls(runtime)

    async def run(
        self, task: TaskRecord, process_id: int, definition: ProcessDefinition
    ) -> StepResult:
        result = await self._step(task, process_id, definition)
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

    async def _step(
        self, task: TaskRecord, process_id: int, definition: ProcessDefinition
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
        result = StepResult(data=data)
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
        kind = logic.type
        if kind == "go":
            return str(logic.get("to"))
        if kind == "condition":
            return str(logic.get("to")) if all_match(logic.get("if"), result.data) else None
        if kind == "set_param":
            values = render(dict(logic.get("set")), ctx)
            plain, _hidden = secretdata.split(values)
            result.data.update(plain)
            return None
        if kind == "twilio":
            await self.twilio.run(task, process_id, logic, ctx, result)
            return None
        if kind == "api_call":
            await self.api.run(task, logic, ctx, result)
            return None
        if kind == "expect_reply":
            result.listen = conversation(logic, ctx)
            return None
        if kind == "reply":
            data = render(dict(logic.get("data")), ctx) if logic.get("data") else dict(result.data)
            plain, _hidden = secretdata.split(data)
            result.reply = Reply(plain, bool(logic.get("exception", False)))
            return None
        if kind == "copy_task":
            await self._copy_task(task, logic, ctx, result)
            return None
        if kind == "modify_task":
            await self._modify_task(logic, ctx, result)
            return None
        raise LogicFailure(
            {
                "error": "BAD_LOGIC",
                "code": "BAD_LOGIC",
                "message": f"logic {kind!r} cannot run here",
            }
        )

    async def _copy_task(
        self, task: TaskRecord, logic: Logic, ctx: dict[str, Any], result: StepResult
    ) -> None:
        ref = render(logic.get("ref"), ctx) if logic.get("ref") is not None else None
        if ref is not None:
            ref = str(ref)
            if not 1 <= len(ref) <= 255:
                raise LogicFailure(
                    {
                        "error": "copy_task_wrong_ref",
                        "code": "copy_task_wrong_ref",
                        "message": "the copy's ref must be 1-255 characters",
                    }
                )
        if logic.get("data") is not None:
            data = render(dict(logic.get("data")), ctx)
        else:
            data = dict(result.data)
        data, _hidden = secretdata.split(data)
        data.update(
            {
                "copy_task_id": task.id,
                "copy_conv_id": ctx["root"]["conv_id"],
                "copy_ref": task.ref,
                "copy_node_id": task.node_id,
            }
        )
        target = await self.rt.run_db(
            self._lookup_copy_target, logic.get("process"), ref, task, len(result.copies)
        )
        process_id, version_id, start = target
        result.copies.append(NewTask(process_id, version_id, start, ref, data, task.id))

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
            target = await self.rt.run_db(
                self._lookup_copy_target, logic.get("process"), None, task, 0
            )
            if node.time_limit is not None:
                wake_at = self._deadline(node, ctx, result.data)
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

    def _lookup_copy_target(
        self, process_key: str, ref: str | None, creator: TaskRecord, pending: int
    ) -> tuple[int, int, str]:
        """The process a copy_task or call_process starts a task in, once the creator's
        quotas allow one more task (engine/quotas.py)."""
        from orchestrator.engine.quotas import exceeded
        from orchestrator.engine.runtime import NotFound
        from orchestrator.store import tasks as task_store

        with self.rt.db.read() as conn:
            own = self.rt.definition(creator.version_id, conn)[2]
            refused = exceeded(conn, self.rt.settings, own, creator, pending)
            if refused is not None:
                raise LogicFailure(refused)
            try:
                proc = self.rt.process(conn, process_key)
            except NotFound as exc:
                raise LogicFailure(
                    {
                        "error": "not_found_process",
                        "code": "not_found_process",
                        "message": f"no process {process_key!r}",
                    }
                ) from exc
            if ref is not None and task_store.active_ref_taken(conn, proc.id, ref):
                raise LogicFailure(
                    {
                        "error": "not_unical_ref",
                        "code": "not_unical_ref",
                        "message": f"ref {ref!r} is taken in {proc.slug}",
                    }
                )
        _pid, _v, definition = self.rt.definition(proc.version_id)
        return proc.id, proc.version_id, definition.start

    async def _modify_task(self, logic: Logic, ctx: dict[str, Any], result: StepResult) -> None:
        task_id = render(logic.get("task_id"), ctx) if logic.get("task_id") else None
        ref = render(logic.get("ref"), ctx) if logic.get("ref") else None
        data = render(dict(logic.get("data") or {}), ctx)
        data, _hidden = secretdata.split(data)
        target = await self.rt.run_db(
            self._lookup_modify_target, logic.get("process"), task_id, ref
        )
        result.modifications.append(Modification(target[0], target[1], data))

    def _lookup_modify_target(self, process_key: str, task_id: Any, ref: Any) -> tuple[int, str]:
        from orchestrator.engine.runtime import NotFound
        from orchestrator.store import tasks as task_store

        with self.rt.db.read() as conn:
            try:
                proc = self.rt.process(conn, process_key)
            except NotFound as exc:
                raise LogicFailure(
                    {
                        "error": "not_found_process",
                        "code": "not_found_process",
                        "message": f"no process {process_key!r}",
                    }
                ) from exc
            found = (
                task_store.get_task(conn, str(task_id))
                if task_id
                else task_store.find_by_ref(conn, proc.id, str(ref))
            )
            if found is None or found.process_id != proc.id or found.state == "done":
                fields: dict[str, Any] = {
                    "error": "not_found_task",
                    "code": "not_found_task",
                    "message": "there is no unfinished task with that "
                    f"{'task_id' if task_id else 'ref'} in "
                    f"{proc.slug}",
                }
                if found is not None and found.process_id == proc.id:
                    # It exists but has ended: a process may treat that as no problem.
                    fields["target_finished"] = True
                raise LogicFailure(fields)
        return proc.id, found.id

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
                result.wake_at = self._deadline(node, ctx, result.data)
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
    def _deadline(node: Node, ctx: dict[str, Any], data: dict[str, Any]) -> float:
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
