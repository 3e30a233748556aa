"""The Corezoid logics as step handlers (engine/plugins.py): ``go``, ``condition``,
``set_param``, ``reply``, ``copy_task`` and ``modify_task``.

(``call_process`` and the wait logics shape a whole node, so the interpreter runs them.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator import secretdata
from orchestrator.engine.conditions import all_match
from orchestrator.engine.definition import Logic
from orchestrator.engine.plugins import Plugin, StepHandler
from orchestrator.engine.quotas import exceeded
from orchestrator.engine.runtime import NotFound, Runtime
from orchestrator.engine.steps import LogicFailure, Modification, NewTask, Reply, StepResult
from orchestrator.engine.targets import modify_target, not_found_process
from orchestrator.engine.templates import render
from orchestrator.store import tasks as task_store
from orchestrator.store.records import TaskRecord


class Go:
    async def run(
        self,
        task: TaskRecord,
        process_id: int,
        logic: Logic,
        ctx: dict[str, Any],
        result: StepResult,
    ) -> str | None:
        return str(logic.get("to"))


class Condition:
    async def run(
        self,
        task: TaskRecord,
        process_id: int,
        logic: Logic,
        ctx: dict[str, Any],
        result: StepResult,
    ) -> str | None:
        return str(logic.get("to")) if all_match(logic.get("if"), result.data) else None


class SetParam:
    async def run(
        self,
        task: TaskRecord,
        process_id: int,
        logic: Logic,
        ctx: dict[str, Any],
        result: StepResult,
    ) -> str | None:
        values = render(dict(logic.get("set")), ctx)
        plain, _hidden = secretdata.split(values)
        result.data.update(plain)
        return None


class ReplyLogic:
    async def run(
        self,
        task: TaskRecord,
        process_id: int,
        logic: Logic,
        ctx: dict[str, Any],
        result: StepResult,
    ) -> str | None:
        data = render(dict(logic.get("data")), ctx) if logic.get("data") else dict(result.data)
        plain, _hidden = secretdata.split(data)
        result.reply = Reply(plain, bool(logic.get("exception", False)))
        return None


class CopyTask:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def run(
        self,
        task: TaskRecord,
        process_id: int,
        logic: Logic,
        ctx: dict[str, Any],
        result: StepResult,
    ) -> str | None:
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
            copy_target, self.rt, logic.get("process"), ref, task, len(result.copies)
        )
        pid, version_id, start = target
        result.copies.append(NewTask(pid, version_id, start, ref, data, task.id))
        return None


class ModifyTask:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def run(
        self,
        task: TaskRecord,
        process_id: int,
        logic: Logic,
        ctx: dict[str, Any],
        result: StepResult,
    ) -> str | None:
        task_id = render(logic.get("task_id"), ctx) if logic.get("task_id") else None
        ref = render(logic.get("ref"), ctx) if logic.get("ref") else None
        data = render(dict(logic.get("data") or {}), ctx)
        data, _hidden = secretdata.split(data)
        process_key = logic.get("process")
        if not result.careful and self._only_pure_after(task, logic):
            # Looked up in the step's commit (engine/targets.py): nothing after this
            # logic reaches outside, so running it before a failed lookup sends nothing.
            lookup = (str(process_key), task_id, ref)
            result.modifications.append(Modification(0, "", data, lookup=lookup))
            return None

        def look_up() -> tuple[int, str]:
            with self.rt.db.read() as conn:
                return modify_target(conn, self.rt, process_key, task_id, ref)

        target = await self.rt.run_db(look_up)
        result.modifications.append(Modification(target[0], target[1], data))
        return None

    def _only_pure_after(self, task: TaskRecord, logic: Logic) -> bool:
        node = self.rt.definition(task.version_id)[2].node(task.node_id)
        return all(later.type in PURE_LOGICS for later in node.logics[logic.index + 1 :])


# Logics that only shape the step's result (no request, no wait): those may run after
# a modify_task whose target is looked up only in the commit.
PURE_LOGICS = frozenset({"go", "condition", "set_param", "modify_task", "copy_task", "reply"})


def copy_target(
    rt: Runtime, process_key: str, ref: str | None, creator: TaskRecord, pending: int
) -> tuple[int, int, str]:
    """The process a copy_task or call_process starts a task in, once the creator's
    quotas allow one more task (engine/quotas.py)."""
    with rt.db.read() as conn:
        own = rt.definition(creator.version_id, conn)[2]
        refused = exceeded(conn, rt.settings, own, creator, pending)
        if refused is not None:
            raise LogicFailure(refused)
        try:
            proc = rt.process(conn, process_key)
        except NotFound as exc:
            raise not_found_process(process_key) from exc
        if ref is not None and task_store.active_ref_taken(conn, proc.id, ref):
            raise LogicFailure(
                {
                    "error": "not_unical_ref",
                    "code": "not_unical_ref",
                    "message": f"ref {ref!r} is taken in {proc.slug}",
                }
            )
    _pid, _v, definition = rt.definition(proc.version_id)
    return proc.id, proc.version_id, definition.start


def _handlers(rt: Runtime) -> Mapping[str, StepHandler]:
    return {
        "go": Go(),
        "condition": Condition(),
        "set_param": SetParam(),
        "reply": ReplyLogic(),
        "copy_task": CopyTask(rt),
        "modify_task": ModifyTask(rt),
    }


plugin: Plugin[Runtime] = Plugin("corezoid", steps=_handlers)
