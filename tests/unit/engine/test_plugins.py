"""A provider plugin registered in a test, without touching the core (docs/architecture.md).

"Pigeon post" stands in for Twilio: its step handler takes the ``twilio`` logic type
and its callback form reads its own fields (``pigeon_id``, ``state``), so the engine
routes, deduplicates and orders its callbacks with none of Twilio's rules: no signature,
no MessageSid, no MessageStatus ranking. It also brings a logic type of its own,
``tie_ribbon`` with its field ``colour``: the process format learns it from the plugin.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from sqlalchemy import Connection

from orchestrator.config import Settings
from orchestrator.engine import api_call, logics, plugins, schema, two_way
from orchestrator.engine.definition import DefinitionError, Logic
from orchestrator.engine.logic_checks import LogicFail
from orchestrator.engine.logic_types import LogicType
from orchestrator.engine.runtime import Runtime
from orchestrator.engine.steps import StepResult
from orchestrator.engine.worker import Worker
from orchestrator.services.deploy import deploy_definitions
from orchestrator.services.tasks import Service
from orchestrator.store.records import TaskRecord

STATES = ("hatched", "flying", "arrived")  # a pigeon's state only ever moves right

PROCESS: dict[str, Any] = {
    "slug": "pigeon-post",
    "title": "Pigeon post",
    "nodes": {
        "start": {"kind": "start", "logics": [{"type": "go", "to": "sending"}]},
        "sending": {
            "on_error": "lost",
            "logics": [
                {"type": "twilio", "action": "send_sms", "params": {"To": "{{ To }}"}},
                {"type": "go", "to": "waiting"},
            ],
        },
        "waiting": {
            "kind": "wait",
            "logics": [
                {"type": "wait_callback"},
                {
                    "type": "condition",
                    "if": [{"param": "state", "fun": "eq", "value": "arrived"}],
                    "to": "arrived",
                },
                {"type": "go", "to": "waiting"},
            ],
        },
        "arrived": {"kind": "success"},
        "lost": {"kind": "escalation"},
    },
}


class SendPigeon:
    """The step handler: 'sends' and says which bird carries the message."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def run(
        self,
        task: TaskRecord,
        process_id: int,
        logic: Logic,
        ctx: dict[str, Any],
        result: StepResult,
    ) -> str | None:
        to = str(ctx["To"])
        self.sent.append(to)
        result.data["pigeon_id"] = f"bird-{len(self.sent)}"
        return None


class PigeonForm(plugins.CallbackForm):
    """The callback form: the bird names the task, a state never goes backwards."""

    def addressee(self, payload: dict[str, Any]) -> plugins.Addressee | None:
        bird = payload.get("pigeon_id")
        if not bird:
            raise plugins.CallbackRefused("MISSING_BIRD", "which pigeon?")
        return plugins.Addressee(str(bird), f"{bird}:{payload.get('state')}")

    def verify(
        self,
        conn: Connection,
        payload: dict[str, Any],
        *,
        url: str | None,
        signature: str | None,
        pairs: list[tuple[str, str]],
    ) -> bool:
        return True

    def advances(self, payload: dict[str, Any], data: dict[str, Any]) -> bool:
        new, old = payload.get("state"), data.get("state")
        return old not in STATES or STATES.index(str(new)) > STATES.index(str(old))


COLOURS = ("red", "blue")


def check_ribbon(spec: Mapping[str, Any], fail: LogicFail) -> None:
    if spec.get("colour") not in COLOURS:
        raise fail(f"must be one of {', '.join(COLOURS)}", "colour")


# A logic type the core has never heard of: its field, its check, its schema.
TIE_RIBBON = LogicType(
    "tie_ribbon",
    description="a ribbon on the pigeon's leg",
    fields={"colour": {"enum": list(COLOURS)}},
    required=("colour",),
    check=check_ribbon,
)


class TieRibbon:
    """The new type's step handler."""

    async def run(
        self,
        task: TaskRecord,
        process_id: int,
        logic: Logic,
        ctx: dict[str, Any],
        result: StepResult,
    ) -> str | None:
        result.data["ribbon"] = logic.get("colour")
        return None


def pigeon_plugin(handler: SendPigeon) -> plugins.Plugin[Runtime]:
    def steps(rt: Runtime) -> Mapping[str, plugins.StepHandler]:
        return {"twilio": handler, "tie_ribbon": TieRibbon()}

    def forms(rt: Runtime) -> Mapping[str, plugins.CallbackForm]:
        return {"twilio": PigeonForm()}

    return plugins.Plugin("pigeon", steps=steps, forms=forms, logic_types=(TIE_RIBBON,))


def test_a_provider_plugin_replaces_twilio_without_touching_the_core(sqlite_url: str) -> None:
    handler = SendPigeon()
    core = [logics.plugin, api_call.plugin, two_way.plugin]
    rt = Runtime(
        Settings(database_url=sqlite_url, poll_interval=0.05),
        plugins=[*core, pigeon_plugin(handler)],
    )
    deploy_definitions(rt, [(PROCESS, None)])
    service = Service(rt)
    view, _created = asyncio.run(service.create_task("pigeon-post", None, {"To": "the castle"}))
    task_id, conv_id = view["task_id"], view["conv_id"]
    node_hash = rt.node_hash(conv_id, "waiting")

    async def post(payload: dict[str, Any]) -> str:
        # To the task's own URL (.../{conv_id}/{hash}/{task_id}), as a StatusCallback is.
        answer = await service.callbacks.receive_callback(
            "twilio", str(conv_id), node_hash, payload, task_id=task_id
        )
        return str(answer["status"])

    async def until(node: str, state: str | None = None) -> dict[str, Any]:
        for _ in range(200):
            task = await service.get_task(task_id)
            settled = task["node"]["id"] == node and task["state"] in ("waiting", "done")
            if settled and task["data"].get("state") == state:
                return task
            await asyncio.sleep(0.02)
        raise AssertionError(f"task never reached {node}: {await service.get_task(task_id)}")

    async def scenario() -> dict[str, Any]:
        worker = Worker(rt)
        runner = asyncio.create_task(worker.run())
        try:
            await until("waiting")
            assert await post({"pigeon_id": "bird-1", "state": "flying"}) == "accepted"
            assert await post({"pigeon_id": "bird-1", "state": "flying"}) == "duplicate"
            await until("waiting", "flying")
            # Backwards: stored, then only recorded (the form says it does not advance).
            assert await post({"pigeon_id": "bird-1", "state": "hatched"}) == "accepted"
            for _ in range(200):
                if any(e["kind"] == "callback_ignored" for e in await service.history(task_id)):
                    break
                await asyncio.sleep(0.02)
            assert (await service.get_task(task_id))["data"]["state"] == "flying"
            assert await post({"pigeon_id": "bird-1", "state": "arrived"}) == "accepted"
            return await until("arrived", "arrived")
        finally:
            await worker.stop()
            await runner

    try:
        done = asyncio.run(scenario())
    finally:
        rt.db.dispose()
    assert handler.sent == ["the castle"]
    assert done["outcome"] == "success" and done["data"]["state"] == "arrived"
    # No Twilio rule applied: no signature was asked for, and the callback carried no
    # MessageSid or MessageStatus.
    assert "MessageStatus" not in done["data"]


def test_a_pigeon_form_refuses_a_callback_naming_no_bird(sqlite_url: str) -> None:
    handler = SendPigeon()
    rt = Runtime(Settings(database_url=sqlite_url), plugins=[logics.plugin, pigeon_plugin(handler)])
    deploy_definitions(rt, [(PROCESS, None)])
    conv_id = asyncio.run(Service(rt).process_view("pigeon-post"))["conv_id"]
    node_hash = rt.node_hash(conv_id, "waiting")
    try:
        asyncio.run(
            Service(rt).callbacks.receive_callback(
                "twilio", str(conv_id), node_hash, {"state": "x"}
            )
        )
    except Exception as exc:  # the form's refusal, as the domain error the API maps
        assert getattr(exc, "code", None) == "MISSING_BIRD"
        assert type(exc).__name__ == "Invalid"
    else:
        raise AssertionError("a callback naming no bird was accepted")
    finally:
        rt.db.dispose()


def ribbon_process(**ribbon: Any) -> dict[str, Any]:
    return {
        "slug": "ribbons",
        "title": "Ribbons",
        "nodes": {
            "start": {"kind": "start", "logics": [{"type": "go", "to": "dressing"}]},
            "dressing": {
                "logics": [{"type": "tie_ribbon", **ribbon}, {"type": "go", "to": "ready"}]
            },
            "ready": {"kind": "success"},
            "lost": {"kind": "escalation"},
        },
    }


def test_a_plugin_adds_a_logic_type_without_touching_the_core(sqlite_url: str) -> None:
    rt = Runtime(
        Settings(database_url=sqlite_url, poll_interval=0.05),
        plugins=[logics.plugin, pigeon_plugin(SendPigeon())],
    )
    try:
        # The plugin's own check refuses a bad value, naming node and field…
        with pytest.raises(DefinitionError) as refused:
            deploy_definitions(rt, [(ribbon_process(colour="green"), "ribbons.yaml")])
        assert refused.value.as_dict() == {
            "file": "ribbons.yaml",
            "node": "dressing",
            "field": "logics[0].colour",
            "reason": "must be one of red, blue",
        }
        # …and its schema fragment a key it does not know (the deploy-time schema).
        with pytest.raises(DefinitionError) as unknown_key:
            deploy_definitions(rt, [(ribbon_process(colour="red", knot=2), None)])
        assert "(schema)" in str(unknown_key.value) and "knot" in str(unknown_key.value)
        assert "tie_ribbon" in schema.schema()["$defs"]
        assert "tie_ribbon" not in schema.published()  # the published file: default plugins

        deploy_definitions(rt, [(ribbon_process(colour="red"), None)])
        service = Service(rt)
        task_id = asyncio.run(service.create_task("ribbons", None, {}))[0]["task_id"]

        async def run_until_done() -> dict[str, Any]:
            worker = Worker(rt)
            runner = asyncio.create_task(worker.run())
            try:
                for _ in range(200):
                    task = await service.get_task(task_id)
                    if task["state"] == "done":
                        return task
                    await asyncio.sleep(0.02)
                raise AssertionError(f"the task never finished: {task}")
            finally:
                await worker.stop()
                await runner

        done = asyncio.run(run_until_done())
    finally:
        rt.db.dispose()
    assert done["outcome"] == "success" and done["data"]["ribbon"] == "red"


def test_two_plugins_cannot_declare_one_logic_type() -> None:
    # Declaring the very same type again (a second runtime's plugins) is fine.
    for name in ("pigeon", "again"):
        plugins.register_logic_types([plugins.Plugin(name, logic_types=(TIE_RIBBON,))])
    assert plugins.known_logic_types()["tie_ribbon"] is TIE_RIBBON
    impostor = LogicType("tie_ribbon")
    with pytest.raises(ValueError, match="tie_ribbon"):
        plugins.Plugins([plugins.Plugin("impostor", logic_types=(impostor,))])
    with pytest.raises(ValueError, match="'go'"):  # nor take over one of the core's
        plugins.register_logic_types([plugins.Plugin("x", logic_types=(LogicType("go"),))])
