"""The Corezoid logics as a plugin (engine/plugins.py): ``go``, ``condition``,
``set_param``, ``reply``, ``copy_task`` and ``modify_task``, their step handlers and
their place in the process format (fields, checks).

(``call_process`` and the wait logics shape a whole node, so the interpreter runs them;
engine/logic_types.py declares them.)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from orchestrator import secretdata
from orchestrator.engine import targets
from orchestrator.engine.conditions import CASTS, CONDITION_FUNS, all_match
from orchestrator.engine.definition import Logic
from orchestrator.engine.logic_checks import LogicFail, check_mapping, check_process_target
from orchestrator.engine.logic_types import DATA, NODE_ID, LogicType
from orchestrator.engine.plugins import Plugin, StepHandler
from orchestrator.engine.runtime import Runtime
from orchestrator.engine.steps import LogicFailure, Modification, NewTask, Reply, StepResult
from orchestrator.engine.targets import modify_target
from orchestrator.engine.templates import render
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
        process_key, pending = str(logic.get("process")), len(result.copies)
        if not result.careful and only_pure_after(self.rt, task, logic):
            # Process and quotas checked in the step's commit (engine/targets.py).
            check = (process_key, pending)
            result.copies.append(NewTask(0, 0, "", ref, data, task.id, check=check))
            return None
        target = await self.rt.run_db(copy_target, self.rt, process_key, ref, task, pending)
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
        if not result.careful and only_pure_after(self.rt, task, logic):
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


def only_pure_after(rt: Runtime, task: TaskRecord, logic: Logic) -> bool:
    """Whether every logic after ``logic`` in the task's node only shapes the step's
    result: then a check of ``logic`` may wait for the step's commit, since the logics
    run before a failed check there reach nothing outside (engine/targets.py)."""
    node = rt.definition(task.version_id)[2].node(task.node_id)
    return all(later.type in PURE_LOGICS for later in node.logics[logic.index + 1 :])


# Logics that only shape the step's result (no request, no wait).
PURE_LOGICS = frozenset({"go", "condition", "set_param", "modify_task", "copy_task", "reply"})


def copy_target(
    rt: Runtime, process_key: str, ref: str | None, creator: TaskRecord, pending: int
) -> tuple[int, int, str]:
    """``targets.copy_target`` in a read transaction of its own."""
    with rt.db.read() as conn:
        return targets.copy_target(conn, rt, process_key, ref, creator, pending)


def _handlers(rt: Runtime) -> Mapping[str, StepHandler]:
    return {
        "go": Go(),
        "condition": Condition(),
        "set_param": SetParam(),
        "reply": ReplyLogic(),
        "copy_task": CopyTask(rt),
        "modify_task": ModifyTask(rt),
    }


# -- the process format ----------------------------------------------------------------
def _check_to(spec: Mapping[str, Any], fail: LogicFail) -> None:
    if not isinstance(spec.get("to"), str):
        raise fail("must name the next node", "to")


def _check_condition(spec: Mapping[str, Any], fail: LogicFail) -> None:
    _check_to(spec, fail)
    conds = spec.get("if")
    if not isinstance(conds, list) or not conds:
        raise fail("must be a non-empty list of {param, fun, value, cast?}", "if")
    for j, cond in enumerate(conds):
        at = f"if[{j}]"
        if not isinstance(cond, Mapping) or not isinstance(cond.get("param"), str):
            raise fail("needs param", at)
        if cond.get("fun", "eq") not in CONDITION_FUNS:
            raise fail(f"fun must be one of {', '.join(CONDITION_FUNS)}", f"{at}.fun")
        if cond.get("cast", "string") not in CASTS:
            raise fail(f"cast must be one of {', '.join(CASTS)}", f"{at}.cast")
        if "value" not in cond:
            raise fail("needs value", f"{at}.value")
        if cond.get("fun") == "regexp":
            try:
                re.compile(str(cond["value"]))
            except re.error as exc:
                raise fail(f"bad regular expression: {exc}", f"{at}.value") from exc


def _check_set_param(spec: Mapping[str, Any], fail: LogicFail) -> None:
    if not isinstance(spec.get("set"), Mapping):
        raise fail("must map parameter names to values", "set")


def _check_reply(spec: Mapping[str, Any], fail: LogicFail) -> None:
    check_mapping(spec, "data", fail)
    if not isinstance(spec.get("exception", False), bool):
        raise fail("must be true or false", "exception")


def _check_modify_task(spec: Mapping[str, Any], fail: LogicFail) -> None:
    check_process_target(spec, fail)
    if not (spec.get("ref") or spec.get("task_id")):
        raise fail("needs ref or task_id")


CONDITION_SCHEMA = {
    "type": "object",
    "properties": {
        "param": {"type": "string", "description": "a parameter path: a, a.b, a[0]"},
        "fun": {"enum": list(CONDITION_FUNS)},
        "value": {},
        "cast": {"enum": list(CASTS)},
    },
    "required": ["param", "value"],
    "additionalProperties": False,
}
LOGIC_TYPES = (
    LogicType(
        "go",
        description="go to another node",
        fields={"to": NODE_ID},
        required=("to",),
        check=_check_to,
        links=("to",),
        last=True,
    ),
    LogicType(
        "condition",
        description="go to `to` if every comparison holds",
        fields={
            "to": NODE_ID,
            "if": {"type": "array", "minItems": 1, "items": CONDITION_SCHEMA},
        },
        required=("to", "if"),
        check=_check_condition,
        links=("to",),
    ),
    LogicType(
        "set_param",
        description="set parameters from templates",
        fields={"set": {"type": "object"}},
        required=("set",),
        check=_check_set_param,
    ),
    LogicType(
        "copy_task",
        description="a new task in another process",
        fields={"process": {"type": "string"}, "ref": {"type": "string"}, "data": DATA},
        required=("process",),
        check=check_process_target,
        needs_on_error=True,
    ),
    LogicType(
        "modify_task",
        description="write into a waiting task of another process",
        fields={
            "process": {"type": "string"},
            "ref": {"type": "string"},
            "task_id": {"type": "string"},
            "data": DATA,
        },
        required=("process",),
        check=_check_modify_task,
        needs_on_error=True,
    ),
    LogicType(
        "reply",
        description="answer the task that called this one",
        fields={"data": DATA, "exception": {"type": "boolean"}},
        check=_check_reply,
    ),
)

plugin: Plugin[Runtime] = Plugin("corezoid", steps=_handlers, logic_types=LOGIC_TYPES)
