"""The runtime: its plugins, what plugins keep per runtime, and the definition cache."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from deployed import deploy, runtime

from orchestrator.engine import logics, plugins
from orchestrator.engine import runtime as runtime_module
from orchestrator.engine.logic_types import LogicType
from orchestrator.engine.plugins import GENERIC_FORM, CallbackForm, JobHost, Plugin
from orchestrator.engine.runtime import CALLBACK_URL_FORMS, NotFound, Runtime
from orchestrator.twilio.callback_sender import SIGNED_REQUEST
from orchestrator.twilio.plugin import TwilioForm

PROCESS: dict[str, Any] = {
    "slug": "hold",
    "title": "Hold",
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
def rt(sqlite_url: str) -> Iterator[Runtime]:
    made = runtime(sqlite_url)
    try:
        yield made
    finally:
        made.db.dispose()


def test_the_default_plugins_are_loaded(rt: Runtime) -> None:
    handlers = rt.plugins.step_handlers(rt)
    assert set(handlers) == {
        "go",
        "condition",
        "set_param",
        "reply",
        "copy_task",
        "modify_task",
        "api_call",
        "expect_reply",
        "twilio",
    }
    assert isinstance(rt.callback_form("twilio"), TwilioForm)
    assert rt.callback_form("sms") is not GENERIC_FORM
    assert rt.callback_form("json") is GENERIC_FORM  # no plugin claims it
    assert rt.callback_form("twilio") is rt.callback_form("twilio")  # built once
    assert len(rt.plugins.jobs()) == 1  # Twilio's reconciliation sweep
    assert SIGNED_REQUEST in rt.plugins.hidden_fields(rt)  # never merged into a task


def test_a_runtime_has_only_the_plugins_it_is_given(sqlite_url: str) -> None:
    async def job(_rt: Runtime, _engine: JobHost) -> None:
        return None

    class Quiet(CallbackForm):
        def hidden_fields(self) -> tuple[str, ...]:
            return ("whisper",)

    def forms(_rt: Runtime) -> Mapping[str, CallbackForm]:
        return {"quiet": Quiet()}

    extra = Plugin[Runtime]("extra", forms=forms, jobs=(job,))
    rt = runtime(sqlite_url, plugins=[logics.plugin, extra])
    try:
        assert set(rt.plugins.step_handlers(rt)) == {
            "go",
            "condition",
            "set_param",
            "reply",
            "copy_task",
            "modify_task",
        }
        assert rt.callback_form("twilio") is GENERIC_FORM
        assert isinstance(rt.callback_form("quiet"), Quiet)
        assert rt.plugins.hidden_fields(rt) == ("whisper",)
        assert rt.plugins.jobs() == [job]
    finally:
        rt.db.dispose()


def test_each_worker_gets_fresh_handlers(rt: Runtime) -> None:
    first, second = rt.plugins.step_handlers(rt), rt.plugins.step_handlers(rt)
    assert first["api_call"] is not second["api_call"]


def test_two_plugins_may_not_handle_one_type(sqlite_url: str) -> None:
    again = Plugin[Runtime]("again", steps=lambda rt: {"go": logics.Go()})
    rt = runtime(sqlite_url, plugins=[logics.plugin, again])
    try:
        with pytest.raises(ValueError, match="'go'"):
            rt.plugins.step_handlers(rt)
    finally:
        rt.db.dispose()


class Client:
    """What a plugin keeps per runtime (a provider's HTTP client, say)."""

    made = 0

    def __init__(self, rt: Runtime) -> None:
        Client.made += 1
        self.rt = rt
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True


def test_an_extension_is_made_once_per_runtime_and_closed_with_it(
    rt: Runtime, sqlite_url: str
) -> None:
    Client.made = 0
    client = rt.extension(Client)
    assert rt.extension(Client) is client and client.rt is rt and Client.made == 1
    other = runtime(sqlite_url)
    try:
        assert other.extension(Client) is not client  # its own runtime, its own client
    finally:
        other.db.dispose()
    asyncio.run(rt.aclose())
    assert client.closed
    assert rt.extension(Client) is not client  # forgotten on close: a new one


def test_a_definition_is_parsed_once_and_kept(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    deployed = deploy(rt, PROCESS)["hold"]
    with pytest.raises(NotFound):
        rt.definition(deployed.version_id + 1)
    first = rt.definition(deployed.version_id)
    assert first[0] == deployed.process_id and first[2].slug == "hold"

    def no_database(*args: Any) -> None:
        raise AssertionError("a kept version was read again")

    monkeypatch.setattr(runtime_module.process_store, "get_version", no_database)
    assert rt.definition(deployed.version_id) is first


def test_callback_urls_name_the_wait_node(rt: Runtime) -> None:
    deployed = deploy(rt, PROCESS)["hold"]
    urls = rt.callback_urls(deployed.process_id, "waiting")
    assert set(urls) == set(CALLBACK_URL_FORMS)
    node_hash = rt.node_hash(deployed.process_id, "waiting")
    assert all(node_hash in url for url in urls.values())
    with rt.db.read() as conn:
        assert rt.wait_node_for_hash(conn, deployed.process_id, node_hash) == "waiting"
        assert rt.wait_node_for_hash(conn, deployed.process_id, "0" * len(node_hash)) is None
    assert rt.cached_wait_node(deployed.process_id, node_hash) == "waiting"


def test_runtimes_plugins_join_the_process_format(sqlite_url: str) -> None:
    """A plugin's logic types are known to parsing once a runtime is given the plugin."""
    hum = LogicType("hum_for_test_runtime")
    rt = runtime(sqlite_url, plugins=[logics.plugin, Plugin[Runtime]("hum", logic_types=(hum,))])
    rt.db.dispose()
    assert plugins.known_logic_types()["hum_for_test_runtime"] is hum
