"""Unit tests for orchestrator/engine/definition.py (and deploy.py's pure helpers).

Every validation error must name the file, the node and the field, so each failing case
asserts ``err.node`` and ``err.field`` and that the file appears in the message.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.engine import logics
from orchestrator.engine.definition import (
    DefinitionError,
    Logic,
    Node,
    ProcessDefinition,
    TimeLimit,
    parse_definition,
)
from orchestrator.engine.logic_checks import parse_duration
from orchestrator.engine.logic_types import CORE_LOGIC_TYPES, LogicType
from orchestrator.engine.plugins import known_logic_types
from orchestrator.services.deploy import diff, read_file, validate

PROCESSES = Path(__file__).resolve().parents[3] / "processes"
FILE = "demo.yaml"


# --------------------------------------------------------------------------- helpers


def base() -> dict[str, Any]:
    """The smallest valid process: start → work → done, plus an escalation node."""
    return {
        "slug": "demo",
        "title": "Demo",
        "nodes": {
            "start": {"kind": "start", "logics": [{"type": "go", "to": "work"}]},
            "work": {"logics": [{"type": "go", "to": "done"}]},
            "done": {"kind": "success"},
            "oops": {"kind": "escalation"},
        },
    }


def with_top(**changes: Any) -> dict[str, Any]:
    raw = base()
    for key, value in changes.items():
        if value is _DELETE:
            raw.pop(key, None)
        else:
            raw[key] = value
    return raw


def with_nodes(nodes: dict[Any, Any]) -> dict[str, Any]:
    """Replace (or, with _DELETE, remove) nodes of the base process."""
    raw = base()
    for nid, spec in nodes.items():
        if spec is _DELETE:
            del raw["nodes"][nid]
        else:
            raw["nodes"][nid] = spec
    return raw


def with_work(*logics: Any, **node: Any) -> dict[str, Any]:
    """Base process whose ``work`` node has these logics (and extra node keys)."""
    return with_nodes({"work": {"logics": list(logics), **node}})


def cond_logic(*conds: Any, to: str = "done") -> dict[str, Any]:
    return {"type": "condition", "if": list(conds), "to": to}


def go(to: str = "done") -> dict[str, Any]:
    return {"type": "go", "to": to}


class _Delete:
    pass


_DELETE: Any = _Delete()


def fails(raw: Any) -> DefinitionError:
    with pytest.raises(DefinitionError) as info:
        parse_definition(raw, file=FILE)
    err = info.value
    assert err.file == FILE
    assert FILE in str(err)
    return err


def check(raw: Any, node: str | None, field: str | None, fragment: str = "") -> DefinitionError:
    err = fails(raw)
    assert (err.node, err.field) == (node, field), str(err)
    assert fragment in err.reason, err.reason
    if node:
        assert repr(node) in str(err)
    if field:
        assert repr(field) in str(err)
    return err


def test_base_is_valid() -> None:
    definition = parse_definition(base(), file=FILE)
    assert isinstance(definition, ProcessDefinition)
    assert definition.slug == "demo"
    assert definition.start == "start"
    assert definition.default_escalation == "oops"


# --------------------------------------------------------------------------- top level


def test_not_a_mapping() -> None:
    for raw in ([], "slug: x", None, 5):
        err = check(raw, None, None, "must be a mapping")
        assert str(err) == f"file {FILE}: a process file must be a mapping"


def test_unknown_top_level_key() -> None:
    err = check(with_top(version=2), None, "version", "unknown key")
    assert "slug" in err.reason  # lists the allowed keys


@pytest.mark.parametrize(
    "slug", ["Demo", "1demo", "demo_x", "de mo", "", "-demo", "démo", 5, None, _DELETE, "a" * 101]
)
def test_bad_slug(slug: Any) -> None:
    check(with_top(slug=slug), None, "slug", "lowercase")


@pytest.mark.parametrize("slug", ["a", "demo-2", "x" * 100, "sending-sms"])
def test_good_slug(slug: str) -> None:
    assert parse_definition(with_top(slug=slug)).slug == slug


@pytest.mark.parametrize("title", [_DELETE, "", "   ", 5, None, ["x"]])
def test_missing_title(title: Any) -> None:
    check(with_top(title=title), None, "title", "required")


def test_title_is_stripped() -> None:
    assert parse_definition(with_top(title="  Demo  ")).title == "Demo"


def test_bad_description() -> None:
    check(with_top(description=["x"]), None, "description", "text")


@pytest.mark.parametrize(
    "inputs",
    ["Number_to", {"name": "x"}, ["Number_to"], [{"required": True}], [{"name": 5}], [None]],
)
def test_bad_inputs(inputs: Any) -> None:
    check(with_top(inputs=inputs), None, "inputs", "list")


def test_good_inputs() -> None:
    inputs = [{"name": "Body", "required": True}, {"name": "To"}]
    definition = parse_definition(with_top(inputs=inputs, description="about"))
    assert definition.inputs == tuple(inputs)
    assert definition.description == "about"


@pytest.mark.parametrize("nodes", [_DELETE, {}, [], "start", None])
def test_nodes_not_a_mapping(nodes: Any) -> None:
    check(with_top(nodes=nodes), None, "nodes", "node ids")


# --------------------------------------------------------------------------- nodes


@pytest.mark.parametrize(
    ("nid", "shown"),
    [("9lives", "9lives"), ("with space", "with space"), ("_x", "_x"), ("a.b", "a.b"), (42, "42")],
)
def test_bad_node_id(nid: Any, shown: str) -> None:
    check(with_nodes({nid: {"kind": "success"}}), shown, "id", "node ids")


def test_node_id_too_long() -> None:
    check(with_nodes({"n" * 101: {"kind": "success"}}), "n" * 101, "id")


def test_node_not_a_mapping() -> None:
    check(with_nodes({"work": ["go"]}), "work", None, "must be a mapping")


def test_unknown_node_key() -> None:
    err = check(with_work(go(), next="done"), "work", "next", "unknown key")
    assert "time_limit" in err.reason


@pytest.mark.parametrize("kind", ["final", "Start", "", None, 3])
def test_bad_kind(kind: Any) -> None:
    check(with_nodes({"done": {"kind": kind}}), "done", "kind", "must be one of")


def test_bad_node_title() -> None:
    check(with_nodes({"done": {"kind": "success", "title": 5}}), "done", "title", "text")


def test_bad_node_on_error() -> None:
    check(with_work(go(), on_error=["oops"]), "work", "on_error", "must name a node")


@pytest.mark.parametrize("logics", [{"type": "go", "to": "done"}, "go", 5])
def test_logics_not_a_list(logics: Any) -> None:
    check(with_nodes({"work": {"logics": logics}}), "work", "logics", "must be a list")


# --------------------------------------------------------------------------- logics


@pytest.mark.parametrize("logic", ["go", None, ["go", "done"]])
def test_logic_not_a_mapping(logic: Any) -> None:
    check(with_work(logic, go()), "work", "logics[0]", "mapping")


@pytest.mark.parametrize("ltype", ["jump", "Go", None, "api_rpc"])
def test_unknown_logic_type(ltype: Any) -> None:
    check(with_work({"type": ltype, "to": "done"}), "work", "logics[0].type", "unknown logic")


def test_missing_logic_type() -> None:
    check(with_work({"to": "done"}), "work", "logics[0].type", "unknown logic type None")


def test_logic_index_in_field() -> None:
    logics = [{"type": "set_param", "set": {"a": 1}}, {"type": "jump"}]
    check(with_work(*logics), "work", "logics[1].type")


@pytest.mark.parametrize("to", [_DELETE, None, 5, ["done"]])
def test_go_without_to(to: Any) -> None:
    logic: dict[str, Any] = {"type": "go"}
    if to is not _DELETE:
        logic["to"] = to
    check(with_work(logic), "work", "logics[0].to", "next node")


def test_condition_without_to() -> None:
    logic = {"type": "condition", "if": [{"param": "x", "value": 1}]}
    check(with_work(logic, go()), "work", "logics[0].to", "next node")


@pytest.mark.parametrize("conds", [_DELETE, [], "x == 1", {"param": "x", "value": 1}, None])
def test_condition_if_empty_or_not_a_list(conds: Any) -> None:
    logic: dict[str, Any] = {"type": "condition", "to": "done"}
    if conds is not _DELETE:
        logic["if"] = conds
    check(with_work(logic, go()), "work", "logics[0].if", "non-empty list")


@pytest.mark.parametrize("cond", ["x", None, {"value": 1}, {"param": 5, "value": 1}])
def test_condition_without_param(cond: Any) -> None:
    check(with_work(cond_logic(cond), go()), "work", "logics[0].if[0]", "needs param")


@pytest.mark.parametrize("fun", ["gt", "==", "EQ", None])
def test_condition_bad_fun(fun: Any) -> None:
    conds = [{"param": "a", "value": 1}, {"param": "x", "fun": fun, "value": 1}]
    check(with_work(cond_logic(*conds), go()), "work", "logics[0].if[1].fun", "fun must be")


@pytest.mark.parametrize("cast", ["int", "bool", "str", None])
def test_condition_bad_cast(cast: Any) -> None:
    cond = {"param": "x", "cast": cast, "value": 1}
    check(with_work(cond_logic(cond), go()), "work", "logics[0].if[0].cast", "cast must be")


def test_condition_missing_value() -> None:
    cond = {"param": "x", "fun": "eq"}
    check(with_work(cond_logic(cond), go()), "work", "logics[0].if[0].value", "needs value")


@pytest.mark.parametrize("pattern", ["(", "[a-", "*x", "(?P<1>x)"])
def test_condition_bad_regexp(pattern: str) -> None:
    cond = {"param": "x", "fun": "regexp", "value": pattern}
    err = check(with_work(cond_logic(cond), go()), "work", "logics[0].if[0].value")
    assert "bad regular expression" in err.reason


def test_condition_good() -> None:
    conds = [
        {"param": "x", "value": 1},
        {"param": "y", "fun": "regexp", "value": "^(a|b)$"},
        {"param": "z.w[0]", "fun": "more_eq", "cast": "number", "value": "3"},
        {"param": "flag", "fun": "not_eq", "cast": "boolean", "value": None},
    ]
    definition = parse_definition(with_work(cond_logic(*conds), go("oops")))
    logic = definition.node("work").logics[0]
    assert logic.type == "condition"
    assert logic.get("if") == conds


@pytest.mark.parametrize("set_", [_DELETE, None, ["a", 1], "a=1"])
def test_set_param_without_set(set_: Any) -> None:
    logic: dict[str, Any] = {"type": "set_param"}
    if set_ is not _DELETE:
        logic["set"] = set_
    check(with_work(logic, go()), "work", "logics[0].set", "map parameter names")


def test_set_param_needs_no_on_error() -> None:
    definition = parse_definition(with_work({"type": "set_param", "set": {"a": 1}}, go()))
    assert definition.node("work").logics[0].on_error is None


def twilio(**spec: Any) -> dict[str, Any]:
    return {"type": "twilio", "action": "send_sms", "on_error": "oops", **spec}


@pytest.mark.parametrize("action", ["send_fax", "send_telegram", None, ""])
def test_twilio_bad_action(action: Any) -> None:
    check(with_work(twilio(action=action), go()), "work", "logics[0].action", "send_sms")


def test_twilio_missing_action() -> None:
    logic = twilio()
    del logic["action"]
    check(with_work(logic, go()), "work", "logics[0].action")


@pytest.mark.parametrize("params", [["To", "+1"], "To=+1", None])
def test_twilio_bad_params(params: Any) -> None:
    check(with_work(twilio(params=params), go()), "work", "logics[0].params", "mapping")


@pytest.mark.parametrize(
    "callback",
    [
        5,
        ["https://x"],
        {"process": "getting-callback"},
        {"node": "waiting"},
        {"process": 5, "node": "waiting"},
        {"process": "getting-callback", "node": "waiting", "form": "xml"},
    ],
)
def test_twilio_bad_status_callback(callback: Any) -> None:
    logic = twilio(status_callback=callback)
    check(with_work(logic, go()), "work", "logics[0].status_callback", "URL template")


@pytest.mark.parametrize(
    "callback",
    [
        "https://example.com/cb/{{ root.task_id }}",
        {"process": "getting-callback", "node": "waiting"},
        {"process": "getting-callback", "node": "waiting", "form": "json"},
        {"process": "getting-callback", "node": "waiting", "form": "twilio"},
        {"process": "getting-callback", "node": "waiting", "form": "nvp"},
    ],
)
def test_twilio_good_status_callback(callback: Any) -> None:
    for action in ("send_sms", "send_mms", "fetch_message"):
        logic = twilio(action=action, params={"To": "{{ to }}"}, status_callback=callback)
        definition = parse_definition(with_work(logic, go()))
        assert definition.node("work").logics[0].get("status_callback") == callback


@pytest.mark.parametrize("ltype", ["copy_task", "modify_task"])
@pytest.mark.parametrize("process", [_DELETE, None, 5, {"slug": "x"}])
def test_task_logic_missing_process(ltype: str, process: Any) -> None:
    logic: dict[str, Any] = {"type": ltype, "ref": "r", "on_error": "oops"}
    if process is not _DELETE:
        logic["process"] = process
    check(with_work(logic, go()), "work", "logics[0].process", "target process")


@pytest.mark.parametrize("ltype", ["copy_task", "modify_task"])
def test_task_logic_bad_data(ltype: str) -> None:
    logic = {"type": ltype, "process": "p", "ref": "r", "data": ["x"], "on_error": "oops"}
    check(with_work(logic, go()), "work", "logics[0].data", "mapping")


@pytest.mark.parametrize(
    "ident", [{}, {"ref": ""}, {"task_id": None}, {"ref": None, "task_id": ""}]
)
def test_modify_task_without_ref_or_task_id(ident: dict[str, Any]) -> None:
    logic = {"type": "modify_task", "process": "p", "on_error": "oops", **ident}
    check(with_work(logic, go()), "work", "logics[0]", "needs ref or task_id")


@pytest.mark.parametrize("ident", [{"ref": "{{ sid }}"}, {"task_id": "{{ copy_task_id }}"}])
def test_modify_task_with_ref_or_task_id(ident: dict[str, Any]) -> None:
    logic = {"type": "modify_task", "process": "p", "on_error": "oops", **ident}
    parse_definition(with_work(logic, go()))


def test_copy_task_needs_no_ref() -> None:
    logic = {"type": "copy_task", "process": "p", "on_error": "oops"}
    parse_definition(with_work(logic, go()))


FALLIBLE = [
    {"type": "twilio", "action": "send_sms"},
    {"type": "copy_task", "process": "p"},
    {"type": "modify_task", "process": "p", "ref": "r"},
]


@pytest.mark.parametrize("logic", FALLIBLE, ids=lambda lg: lg["type"])
def test_fallible_logic_without_on_error(logic: dict[str, Any]) -> None:
    err = check(with_work(dict(logic), go()), "work", "logics[0].on_error", "needs on_error")
    assert "escalation" in err.reason


@pytest.mark.parametrize("logic", FALLIBLE, ids=lambda lg: lg["type"])
def test_fallible_logic_on_error_on_node(logic: dict[str, Any]) -> None:
    definition = parse_definition(with_work(dict(logic), go(), on_error="oops"))
    node = definition.node("work")
    assert node.on_error == "oops"
    assert node.logics[0].on_error == "oops"
    assert node.logics[1].on_error == "oops"  # the node's on_error applies to every logic


@pytest.mark.parametrize("logic", FALLIBLE, ids=lambda lg: lg["type"])
def test_fallible_logic_on_error_on_logic(logic: dict[str, Any]) -> None:
    raw = with_nodes(
        {
            "work": {
                "on_error": "oops",
                "logics": [{**logic, "on_error": "other"}, go()],
            },
            "other": {"kind": "escalation"},
        }
    )
    node = parse_definition(raw).node("work")
    assert node.logics[0].on_error == "other"  # the logic's own wins over the node's
    assert set(node.exits()) == {"done", "other", "oops"}


def test_fallible_logic_empty_on_error() -> None:
    logic = {"type": "twilio", "action": "send_sms", "on_error": ""}
    check(with_work(logic, go()), "work", "logics[0].on_error")


# --------------------------------------------------------------------------- time limits


def wait_node(time_limit: Any) -> dict[str, Any]:
    raw = with_nodes(
        {
            "work": {"logics": [go("waiting")]},
            "waiting": {
                "kind": "wait",
                "logics": [{"type": "wait_callback"}, go()],
                "time_limit": time_limit,
            },
        }
    )
    return raw


@pytest.mark.parametrize("limit", [{"after": 30}, "30s", 30, ["done"], {"to": 5, "after": 30}])
def test_time_limit_missing_to(limit: Any) -> None:
    check(wait_node(limit), "waiting", "time_limit", "needs to")


def test_time_limit_needs_after_or_at_param() -> None:
    check(wait_node({"to": "oops"}), "waiting", "time_limit", "after")
    check(wait_node({"to": "oops", "after": None}), "waiting", "time_limit", "after")


@pytest.mark.parametrize("after", ["soon", "5 weeks", "-5", -5, True, "", "1e3", "5M", [30], "{x}"])
def test_time_limit_bad_duration(after: Any) -> None:
    check(wait_node({"to": "oops", "after": after}), "waiting", "time_limit.after", "duration")


@pytest.mark.parametrize(
    ("after", "seconds"), [(30, 30.0), ("30s", 30.0), ("5 min", 300.0), ("2h", 7200.0), (0, 0.0)]
)
def test_time_limit_duration(after: Any, seconds: float) -> None:
    limit = parse_definition(wait_node({"to": "oops", "after": after})).node("waiting").time_limit
    assert limit == TimeLimit(to="oops", after=seconds)


def test_time_limit_template_duration_kept_as_text() -> None:
    after = "{{ status_timeout | default(86400) }}"
    limit = parse_definition(wait_node({"to": "oops", "after": after})).node("waiting").time_limit
    assert limit == TimeLimit(to="oops", after=after)


def test_time_limit_at_param() -> None:
    limit = parse_definition(wait_node({"to": "oops", "at_param": "send_at"}))
    assert limit.node("waiting").time_limit == TimeLimit(to="oops", at_param="send_at")
    both = parse_definition(wait_node({"to": "oops", "after": "1d", "at_param": "send_at"}))
    assert both.node("waiting").time_limit == TimeLimit(
        to="oops", after=86400.0, at_param="send_at"
    )


@pytest.mark.parametrize(
    "limit",
    [{"to": "oops", "after": 5, "at_param": ["send_at"]}, {"to": "oops", "at_param": {"a": 1}}],
)
def test_time_limit_at_param_must_be_text(limit: dict[str, Any]) -> None:
    err = fails(wait_node(limit))
    assert err.node == "waiting"


def test_start_node_has_no_time_limit() -> None:
    raw = base()
    raw["nodes"]["start"]["time_limit"] = {"to": "oops", "after": 5}
    check(raw, "start", "time_limit", "start node")


# --------------------------------------------------------------------------- parse_duration


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        (30, 30.0),
        (1.5, 1.5),
        ("30", 30.0),
        ("30s", 30.0),
        ("30 sec", 30.0),
        ("5m", 300.0),
        ("5 min", 300.0),
        ("1.5m", 90.0),
        ("2h", 7200.0),
        ("2 hour", 7200.0),
        ("1d", 86400.0),
        ("3 day", 259200.0),
        ("  10  s  ", 10.0),
        ("0.5", 0.5),
    ],
)
def test_parse_duration(value: Any, seconds: float) -> None:
    result = parse_duration(value)
    assert result == seconds
    assert isinstance(result, float)


@pytest.mark.parametrize(
    "value",
    [
        -1,
        -0.5,
        True,
        False,
        None,
        "",
        "abc",
        "5 weeks",
        "-5s",
        "1e3",
        "5S",
        "s",
        ".5",
        [],
        {},
        "5 5",
    ],
)
def test_parse_duration_rejects(value: Any) -> None:
    assert parse_duration(value) is None


# --------------------------------------------------------------------------- graph


def test_no_start_node() -> None:
    raw = base()
    raw["nodes"]["start"]["kind"] = "logic"
    err = check(raw, None, "nodes", "exactly one start node, found 0")
    assert err.node is None


def test_two_start_nodes() -> None:
    raw = with_nodes({"start2": {"kind": "start", "logics": [go()]}})
    check(raw, None, "nodes", "exactly one start node, found 2")


def test_no_escalation_node() -> None:
    raw = with_nodes({"oops": _DELETE})
    check(raw, None, "on_error", "escalation node")


def test_on_error_names_unknown_node() -> None:
    check(with_top(on_error="nowhere"), None, "on_error", "escalation node")
    check(with_top(on_error=5), None, "on_error")


def test_on_error_names_the_default_escalation() -> None:
    raw = with_work(
        {"type": "set_param", "set": {}, "on_error": "oops"},
        {"type": "set_param", "set": {}, "on_error": "other"},
        go(),
    )
    raw["nodes"]["other"] = {"kind": "escalation"}
    assert parse_definition(raw).default_escalation == "oops"  # the first escalation node
    raw["on_error"] = "other"
    assert parse_definition(raw).default_escalation == "other"


def test_on_error_alone_satisfies_escalation() -> None:
    raw = with_nodes({"oops": {"kind": "error"}})
    raw["on_error"] = "oops"
    assert parse_definition(raw).default_escalation == "oops"


def test_go_to_unknown_node() -> None:
    check(with_work(go("nowhere")), "work", "logics[0].to", "unknown node 'nowhere'")


def test_condition_to_unknown_node() -> None:
    logic = cond_logic({"param": "x", "value": 1}, to="nowhere")
    check(with_work(logic, go()), "work", "logics[0].to", "unknown node 'nowhere'")


def test_logic_on_error_unknown_node() -> None:
    logic = {"type": "twilio", "action": "send_sms", "on_error": "nowhere"}
    check(with_work(logic, go()), "work", "logics[0].on_error", "unknown node 'nowhere'")


def test_node_on_error_unknown_node() -> None:
    logic = {"type": "set_param", "set": {"a": 1}}
    check(with_work(logic, go(), on_error="nowhere"), "work", "logics[0].on_error", "nowhere")


def test_time_limit_to_unknown_node() -> None:
    check(wait_node({"to": "nowhere", "after": 5}), "waiting", "time_limit.to", "'nowhere'")


def test_node_without_exit() -> None:
    check(with_work(), "work", "logics", "no exit")
    check(with_work({"type": "set_param", "set": {"a": 1}}), "work", "logics", "no exit")


def test_wait_node_without_exit() -> None:
    raw = with_nodes(
        {
            "work": {"logics": [go("waiting")]},
            "waiting": {"kind": "wait", "logics": [{"type": "wait_callback"}]},
        }
    )
    check(raw, "waiting", "logics", "no exit")


def test_node_with_only_a_time_limit_has_an_exit() -> None:
    raw = with_nodes(
        {
            "work": {"logics": [go("pause")]},
            "pause": {"kind": "delay", "time_limit": {"to": "done", "after": "5s"}},
        }
    )
    node = parse_definition(raw).node("pause")
    assert node.exits() == ["done"]
    assert node.logics == ()


def test_unreachable_node() -> None:
    raw = with_nodes({"island": {"kind": "success"}, "island2": {"kind": "error"}})
    err = check(raw, "island", None, "cannot be reached")
    assert "island, island2" in err.reason


def test_unreachable_cycle() -> None:
    raw = with_nodes(
        {"a": {"logics": [go("b")]}, "b": {"logics": [go("a")]}},
    )
    check(raw, "a", None, "cannot be reached")


def test_default_escalation_counts_as_reachable() -> None:
    # Nothing links to "oops" but it is the default escalation; what it links to is fine too.
    definition = parse_definition(base())
    assert "oops" in definition.nodes


def test_escalation_reachable_only_by_on_error() -> None:
    raw = with_nodes({"other": {"kind": "escalation"}})
    raw["on_error"] = "oops"
    check(raw, "other", None, "cannot be reached")
    raw["nodes"]["work"]["on_error"] = "other"
    parse_definition(raw)


@pytest.mark.parametrize("kind", ["success", "error", "escalation"])
def test_final_node_with_logics(kind: str) -> None:
    raw = with_nodes({"done": {"kind": kind, "logics": [go("oops")]}})
    if kind == "escalation":
        raw["nodes"]["oops"]["kind"] = "escalation"
    check(raw, "done", "logics", "final node")


@pytest.mark.parametrize(
    "logics",
    [[], [go()], [{"type": "set_param", "set": {"a": 1}}, {"type": "wait_callback"}, go()]],
)
def test_wait_node_must_start_with_wait_callback(logics: list[Any]) -> None:
    raw = with_nodes(
        {
            "work": {"logics": [go("waiting")]},
            "waiting": {"kind": "wait", "logics": logics, "time_limit": {"to": "oops", "after": 5}},
        }
    )
    check(raw, "waiting", "logics", "wait_callback")


@pytest.mark.parametrize("kind", ["logic", "start"])
def test_wait_callback_outside_wait_node(kind: str) -> None:
    raw = base()
    if kind == "start":
        raw["nodes"]["start"]["logics"].insert(0, {"type": "wait_callback"})
        check(raw, "start", "logics", "belongs in a wait node")
    else:
        check(with_work({"type": "wait_callback"}, go()), "work", "logics", "wait node")


def test_delay_node_with_logics() -> None:
    raw = with_nodes(
        {
            "work": {"logics": [go("pause")]},
            "pause": {"kind": "delay", "logics": [go()], "time_limit": {"to": "done", "after": 5}},
        }
    )
    check(raw, "pause", "time_limit", "only a time_limit")


def test_delay_node_without_time_limit() -> None:
    raw = with_nodes({"work": {"logics": [go("pause")]}, "pause": {"kind": "delay"}})
    check(raw, "pause", "time_limit", "only a time_limit")


def test_go_not_last() -> None:
    logics = [{"type": "set_param", "set": {"a": 1}}, go(), {"type": "set_param", "set": {}}]
    check(with_work(*logics), "work", "logics[1]", "go must be the last")


def test_first_error_wins_in_node_order() -> None:
    raw = with_nodes({"work": {"kind": "bogus"}, "done": {"kind": "bogus"}})
    check(raw, "work", "kind")


# --------------------------------------------------------------------------- DefinitionError


def test_definition_error_message_and_dict() -> None:
    err = DefinitionError("boom", file="f.yaml", node="n", field="logics[0].to")
    assert str(err) == "file f.yaml, node 'n', field 'logics[0].to': boom"
    assert err.as_dict() == {
        "file": "f.yaml",
        "node": "n",
        "field": "logics[0].to",
        "reason": "boom",
    }
    assert isinstance(err, ValueError)
    assert str(DefinitionError("boom")) == "boom"
    assert str(DefinitionError("boom", node="n")) == "node 'n': boom"


def test_error_without_file() -> None:
    with pytest.raises(DefinitionError) as info:
        parse_definition(with_top(slug="Bad"))
    assert info.value.file is None
    assert str(info.value).startswith("field 'slug':")


# --------------------------------------------------------------------------- success cases


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((PROCESSES / name).read_text(encoding="utf-8"))


def test_sending_sms_parses() -> None:
    raw = load("sending-sms.yaml")
    definition = parse_definition(raw, file="sending-sms.yaml")
    assert definition.slug == "sending-sms"
    assert definition.title == "Sending SMS"
    assert definition.start == "start"
    assert definition.default_escalation == "api_error"
    assert [n.id for n in definition.wait_nodes()] == ["waiting_for_status"]
    assert {i["name"] for i in definition.inputs} >= {"Number_to", "Body", "AuthToken"}
    assert definition.raw is raw

    calling = definition.node("calling_api")
    assert [lg.type for lg in calling.logics] == ["twilio", "copy_task", "go"]
    assert all(lg.on_error == "api_error" for lg in calling.logics)
    assert sorted(set(calling.exits())) == ["api_error", "waiting_for_status"]

    waiting = definition.node("waiting_for_status")
    assert waiting.time_limit == TimeLimit(
        to="reconcile", after="{{ status_timeout | default(86400) }}"
    )
    # The status checks run inside the wait node once a callback releases the task.
    assert waiting.exits() == ["delivered", "not_delivered", "waiting_for_status", "reconcile"]
    assert [lg.type for lg in waiting.logics] == ["wait_callback", "condition", "condition", "go"]

    finals = {n.id for n in definition.nodes.values() if n.is_final}
    assert finals == {"delivered", "api_error", "sms_not_delivered", "callback_timeout"}
    for nid in finals:
        assert definition.node(nid).exits() == []


def test_getting_callback_parses() -> None:
    definition = parse_definition(load("getting-callback.yaml"), file="getting-callback.yaml")
    assert definition.slug == "getting-callback"
    assert definition.default_escalation == "no_callback"
    assert [n.id for n in definition.wait_nodes()] == ["waiting_for_callback"]
    waiting = definition.node("waiting_for_callback")
    assert waiting.kind == "wait"
    assert waiting.title == "Waiting for Callback"
    assert waiting.exits() == [
        "original_finished",
        "final_status",
        "waiting_for_callback",
        *["check_original"] * 5,
        "no_callback",
    ]
    assert definition.node("check_original").exits() == [
        "original_finished",
        "original_not_found",
    ]
    modify = waiting.logics[2]
    assert modify.get("process") == "sending-sms"
    assert modify.get("missing", "dflt") == "dflt"


def test_node_defaults() -> None:
    definition = parse_definition(base())
    work = definition.node("work")
    assert work == Node(id="work", kind="logic", title="work", logics=work.logics)
    assert work.logics == (Logic(type="go", index=0, spec={"type": "go", "to": "done"}),)
    assert not work.is_final
    assert definition.node("oops").is_final
    assert definition.wait_nodes() == []
    with pytest.raises(KeyError):
        definition.node("nowhere")


def test_exits_ignore_non_text_targets() -> None:
    node = Node(
        id="n",
        kind="logic",
        title="n",
        logics=(Logic("go", 0, {"to": 5}), Logic("set_param", 1, {"set": {}}, on_error="e")),
        time_limit=TimeLimit(to="t", after=1.0),
    )
    assert node.exits() == ["e", "t"]


def test_parse_does_not_mutate_input() -> None:
    raw = load("sending-sms.yaml")
    before = copy.deepcopy(raw)
    parse_definition(raw)
    assert raw == before


# --------------------------------------------------------------------------- deploy helpers


def test_read_file_yaml_and_json(tmp_path: Path) -> None:
    raw = base()
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    (tmp_path / "b.yml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    (tmp_path / "c.json").write_text(json.dumps(raw), encoding="utf-8")
    for name in ("a.yaml", "b.yml", "c.json"):
        assert read_file(tmp_path / name) == raw
        assert read_file(str(tmp_path / name)) == raw


def test_read_shipped_files() -> None:
    for path in sorted(PROCESSES.glob("*.yaml")):
        validate(read_file(path), file=str(path))


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("bad.yaml", "slug: [unclosed\n", "not valid YAML"),
        ("tabs.yaml", "a:\n\t- b\n", "not valid YAML"),
        ("bad.json", '{"slug": ', "not valid JSON"),
        ("yaml-in.json", "slug: demo\n", "not valid JSON"),
        ("list.yaml", "- a\n- b\n", "must be a mapping"),
        ("scalar.yaml", "just text\n", "must be a mapping"),
        ("empty.yaml", "", "must be a mapping"),
        ("list.json", "[1, 2]", "must be a mapping"),
    ],
)
def test_read_file_errors(tmp_path: Path, name: str, text: str, fragment: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DefinitionError) as info:
        read_file(path)
    assert info.value.file == str(path)
    assert str(path) in str(info.value)
    assert fragment in info.value.reason
    assert info.value.node is None and info.value.field is None


def test_read_file_missing(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(DefinitionError) as info:
        read_file(path)
    assert info.value.file == str(path)
    assert "cannot read" in info.value.reason


def test_validate_reports_template_syntax_error() -> None:
    raw = with_work({"type": "set_param", "set": {"a": "{{ x "}}, go())
    with pytest.raises(DefinitionError) as info:
        validate(raw, file=FILE)
    err = info.value
    assert (err.file, err.node, err.field) == (FILE, "work", "logics[0]")
    assert "{{ x " in err.reason
    assert FILE in str(err)


def test_validate_reports_nested_template_error() -> None:
    logic = {
        "type": "twilio",
        "action": "send_sms",
        "on_error": "oops",
        "params": {"To": "{{ to }}", "MediaUrl": ["{{ ok }}", "{% if %}"]},
    }
    with pytest.raises(DefinitionError) as info:
        validate(with_work({"type": "set_param", "set": {}}, logic, go()), file=FILE)
    assert (info.value.node, info.value.field) == ("work", "logics[1]")


def test_validate_passes_definition_errors_through() -> None:
    with pytest.raises(DefinitionError) as info:
        validate(with_top(slug="Bad"), file=FILE)
    assert info.value.field == "slug"


def test_validate_returns_definition() -> None:
    raw = with_work({"type": "set_param", "set": {"a": "{{ missing_is_fine_at_deploy }}"}}, go())
    assert validate(raw).node("work").logics[0].get("set") == {
        "a": "{{ missing_is_fine_at_deploy }}"
    }


def test_validate_reports_time_limit_template_syntax_error() -> None:
    with pytest.raises(DefinitionError) as info:
        validate(wait_node({"to": "oops", "after": "{{ timeout "}), file=FILE)
    assert (info.value.node, info.value.field) == ("waiting", "time_limit.after")


def test_diff_new_process() -> None:
    assert diff(None, base()) == ["new process"]


def test_diff_no_changes() -> None:
    assert diff(base(), base()) == []


def test_diff_nodes_and_fields() -> None:
    old = base()
    new = base()
    new["nodes"]["added"] = {"kind": "error"}
    del new["nodes"]["done"]
    new["nodes"]["work"]["title"] = "Work"
    new["title"] = "Demo 2"
    new["description"] = "now described"
    new["inputs"] = [{"name": "x"}]
    new["on_error"] = "oops"
    assert diff(old, new) == [
        "+ node added",
        "- node done",
        "~ node work",
        "~ title",
        "~ description",
        "~ inputs",
        "~ on_error",
    ]


def test_diff_missing_nodes_key() -> None:
    assert diff({"title": "x"}, {"title": "x", "nodes": {"a": {}}}) == ["+ node a"]
    assert diff({"nodes": {"a": {}}}, {}) == ["- node a"]


def test_listens_only_with_a_reply_logic() -> None:
    """A process without expect_reply / wait_reply never listens: its finished tasks
    skip the ``reply_listeners`` delete (engine/transitions.py)."""
    assert parse_definition(base()).listens is False

    def listens(name: str) -> bool:
        return parse_definition(yaml.safe_load((PROCESSES / name).read_text())).listens

    assert not any(map(listens, ("sending-sms.yaml", "getting-callback.yaml")))
    assert listens("ask-sms.yaml")


# ------------------------------------------------------------ logic types come from plugins


def test_only_the_given_logic_types_are_known() -> None:
    corezoid_only = {t.name: t for t in (*CORE_LOGIC_TYPES, *logics.plugin.logic_types)}
    raw = with_work({"type": "api_call", "url": "http://x/", "on_error": "oops"}, go())
    assert parse_definition(raw).node("work").logics[0].type == "api_call"  # the defaults
    with pytest.raises(DefinitionError) as err:
        parse_definition(raw, logic_types=corezoid_only)
    assert err.value.field == "logics[0].type" and "known: call_process," in err.value.reason


def test_a_declared_types_facts_drive_the_graph_checks() -> None:
    """A type the core never heard of: its ``links`` are checked and followed, ``last``
    keeps logics from following it, ``needs_on_error`` asks for an error path."""
    hop = LogicType("hop", links=("next",), last=True, needs_on_error=True)
    types = {**known_logic_types(), "hop": hop}
    raw = with_work({"type": "hop", "next": "done", "on_error": "oops"})
    definition = parse_definition(raw, logic_types=types)  # done is reached through it
    assert definition.node("work").exits() == ["done", "oops"]
    assert definition.node("work").logics[0].declared is hop

    def refused(raw: dict[str, Any]) -> DefinitionError:
        with pytest.raises(DefinitionError) as err:
            parse_definition(raw, logic_types=types)
        return err.value

    unknown = copy.deepcopy(raw)
    unknown["nodes"]["work"]["logics"][0]["next"] = "nowhere"
    assert refused(unknown).field == "logics[0].next"
    followed = copy.deepcopy(raw)
    followed["nodes"]["work"]["logics"].append(go())
    assert refused(followed).reason == "hop must be the last logic of a node"
    no_error_path = copy.deepcopy(raw)
    del no_error_path["nodes"]["work"]["logics"][0]["on_error"]
    assert refused(no_error_path).field == "logics[0].on_error"
