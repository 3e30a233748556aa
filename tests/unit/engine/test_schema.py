"""The process file schema: built from the core part and the declared logic types."""

from __future__ import annotations

from importlib import resources

import pytest
from jsonschema import Draft202012Validator

from orchestrator.engine import schema
from orchestrator.engine.definition import DefinitionError
from orchestrator.engine.logic_types import LogicType
from orchestrator.engine.plugins import default_logic_types


def test_the_published_file_is_the_default_plugins_schema() -> None:
    """process.schema.json is generated (``python -m orchestrator.engine.schema``)."""
    text = resources.files("orchestrator.engine").joinpath("process.schema.json").read_text()
    assert text == schema.published(), "regenerate: python -m orchestrator.engine.schema"
    names = {t.name for t in default_logic_types()}
    assert {"go", "twilio", "api_call", "wait_reply", "call_process"} <= names


def test_a_declared_type_brings_its_fields() -> None:
    declared = LogicType(
        "ring", fields={"bells": {"type": "integer"}}, required=("bells",), open=False
    )
    composed = schema.compose([declared])
    Draft202012Validator.check_schema(composed)
    logic = composed["$defs"]["ring"]
    assert logic["required"] == ["type", "bells"]
    assert set(logic["properties"]) == {"type", "on_error", "description", "bells"}
    assert logic["additionalProperties"] is False
    assert composed["$defs"]["logic"]["properties"]["type"] == {"enum": ["ring"]}
    raw = {
        "slug": "r",
        "title": "R",
        "nodes": {"start": {"kind": "start", "logics": [{"type": "ring", "bells": "two"}]}},
    }
    errors = list(Draft202012Validator(composed).iter_errors(raw))
    assert [list(e.absolute_path) for e in errors] == [["nodes", "start", "logics", 0, "bells"]]


def test_an_open_type_takes_keys_of_its_own() -> None:
    assert schema.logic_schema(LogicType("x", open=True))["additionalProperties"] is True


def test_check_names_node_and_field() -> None:
    raw = {
        "slug": "s",
        "title": "S",
        "nodes": {"start": {"kind": "start", "logics": [{"type": "go", "to": "x", "y": 1}]}},
    }
    with pytest.raises(DefinitionError) as err:
        schema.check(raw, file="s.yaml")
    assert err.value.node == "start" and err.value.field == "logics[0]"
    assert "(allowed: description, on_error, to, type)" in err.value.reason
