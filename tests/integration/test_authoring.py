"""Authoring: the published JSON Schema, validation errors of the new logics (each names
file, node and field), and the export / graph / versions commands."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from orchestrator.cli import main
from orchestrator.engine.definition import DefinitionError
from orchestrator.engine.schema import schema
from orchestrator.services.deploy import validate

ROOT = Path(__file__).resolve().parents[2]
FILE = "p.yaml"


def base(*logics: Any, **node: Any) -> dict[str, Any]:
    return {
        "slug": "demo",
        "title": "Demo",
        "nodes": {
            "start": {"kind": "start", "logics": [{"type": "go", "to": "work"}]},
            "work": {"logics": [*logics, {"type": "go", "to": "done"}], **node},
            "done": {"kind": "success"},
            "oops": {"kind": "escalation"},
        },
    }


def check(raw: Any, node: str | None, field: str | None, fragment: str = "") -> None:
    with pytest.raises(DefinitionError) as info:
        validate(raw, file=FILE)
    err = info.value
    assert (err.file, err.node, err.field) == (FILE, node, field), str(err)
    assert fragment in err.reason, err.reason


# -- the schema ------------------------------------------------------------------------
def test_schema_is_valid_and_inside_the_package() -> None:
    # The wheel carries every file of the package (tests/acceptance/test_install.py checks it).
    Draft202012Validator.check_schema(schema())
    assert (ROOT / "orchestrator" / "engine" / "process.schema.json").is_file()


@pytest.mark.parametrize("path", sorted((ROOT / "processes").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_processes_pass(path: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    assert list(Draft202012Validator(schema()).iter_errors(raw)) == []
    validate(raw, file=str(path))


def _doc_examples() -> list[dict[str, Any]]:
    text = (ROOT / "docs" / "process-format.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    return [yaml.safe_load(b) for b in blocks if b.startswith("slug:")]


def test_every_complete_example_in_the_docs_passes() -> None:
    examples = _doc_examples()
    assert len(examples) >= 3
    deployable = {e["slug"] for e in examples} | {"sending-sms", "getting-callback"}
    for raw in examples:
        assert list(Draft202012Validator(schema()).iter_errors(raw)) == [], raw["slug"]
        validate(raw, file=raw["slug"])
        for node in raw["nodes"].values():
            for lg in node.get("logics", []):
                if "process" in lg:
                    assert lg["process"] in deployable


@pytest.mark.parametrize(
    ("logic", "field", "fragment"),
    [
        ({"type": "set_param", "set": {}, "sett": 1}, "logics[0]", "'sett' was unexpected"),
        (
            {"type": "condition", "if": [{"param": "a", "value": 1}], "to": "done", "when": 1},
            "logics[0]",
            "'when' was unexpected",
        ),
        (
            {"type": "api_call", "url": "http://x", "idempotent": "yes", "on_error": "oops"},
            "logics[0].idempotent",
            "not of type 'boolean'",
        ),
        (
            {"type": "copy_task", "process": "demo", "ref": 5, "on_error": "oops"},
            "logics[0].ref",
            "not of type 'string'",
        ),
    ],
)
def test_schema_errors_name_file_node_and_field(
    logic: dict[str, Any], field: str, fragment: str
) -> None:
    check(base(logic), "work", field, fragment)


def test_schema_error_on_a_top_level_key() -> None:
    raw = base()
    raw["inputs"] = [{"name": "a", "requird": True}]
    check(raw, None, "inputs[0]", "'requird' was unexpected")


# -- the new logics' validation ------------------------------------------------------------
API = {"type": "api_call", "url": "https://example.com", "on_error": "oops"}


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        ({"url": "ftp://x"}, "logics[0].url", "http(s) URL"),
        ({"url": None}, "logics[0].url", "http(s) URL"),
        ({"method": "FETCH"}, "logics[0].method", "one of"),
        ({"format": "xml"}, "logics[0].format", "one of"),
        ({"headers": ["a"]}, "logics[0].headers", "mapping"),
        ({"params": "a=1"}, "logics[0].params", "mapping"),
        ({"timeout": "soon"}, "logics[0].timeout", "duration"),
        ({"timeout": 0}, "logics[0].timeout", "duration"),
        ({"on_error": None}, "logics[0].on_error", "needs on_error"),
    ],
)
def test_api_call_validation(change: dict[str, Any], field: str, fragment: str) -> None:
    logic = {**API, **change}
    logic = {k: v for k, v in logic.items() if v is not None}
    check(base(logic), "work", field, fragment)


CALL = {"type": "call_process", "process": "demo", "on_error": "oops"}


def test_call_process_must_be_first_in_a_logic_node() -> None:
    check(base({"type": "set_param", "set": {}}, CALL), "work", "logics[1]", "first logic")
    raw = base()
    raw["nodes"]["start"]["logics"] = [CALL, {"type": "go", "to": "work"}]
    check(raw, "start", "logics[0]", "first logic")


def test_call_process_fields() -> None:
    check(base({**CALL, "timeout": "later"}), "work", "logics[0].timeout", "duration")
    check(base({k: v for k, v in CALL.items() if k != "on_error"}), "work", "logics[0].on_error")
    check(base({k: v for k, v in CALL.items() if k != "process"}), "work", "logics[0].process")


def test_reply_fields() -> None:
    check(base({"type": "reply", "data": [1]}), "work", "logics[0].data", "mapping")
    check(base({"type": "reply", "exception": "yes"}), "work", "logics[0].exception")


def test_graph_links_are_checked_for_new_logics() -> None:
    check(base({**CALL, "on_error": "nowhere"}), "work", "logics[0].on_error", "unknown node")


# -- export, graph, versions ---------------------------------------------------------
def run(capsys: pytest.CaptureFixture[str], db: str, *args: str) -> tuple[int, str, str]:
    code = main(["--database-url", db, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_export_graph_and_versions(
    sqlite_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run(capsys, sqlite_url, "process", "export", "sending-sms")
    assert code == 0
    shipped = yaml.safe_load((ROOT / "processes" / "sending-sms.yaml").read_text())
    assert yaml.safe_load(out) == shipped

    changed = copy.deepcopy(shipped)
    changed["title"] = "Sending SMS v2"
    changed["nodes"]["delivered"]["title"] = "Delivered!"
    path = tmp_path / "sms.json"
    path.write_text(json.dumps(changed))
    code, out, _ = run(capsys, sqlite_url, "deploy", str(path))
    assert code == 0 and "deployed version 2" in out
    assert "~ node delivered" in out and "~ title" in out
    assert '~ nodes.delivered.title: "SMS delivered" -> "Delivered!"' in out
    assert '~ title: "Sending SMS" -> "Sending SMS v2"' in out

    code, out, _ = run(capsys, sqlite_url, "process", "versions", "sending-sms")
    assert code == 0 and re.search(r"^1 .*sending-sms.yaml", out, re.M)
    assert re.search(r"^2 .*sms.json", out, re.M)

    target = tmp_path / "v1.json"
    code, _, _ = run(
        capsys, sqlite_url, "process", "export", "sending-sms", "--version", "1", "-o", str(target)
    )
    assert code == 0 and json.loads(target.read_text()) == shipped
    code, out, _ = run(capsys, sqlite_url, "process", "export", "sending-sms")
    assert yaml.safe_load(out)["title"] == "Sending SMS v2"

    code, out, _ = run(capsys, sqlite_url, "process", "graph", "sending-sms")
    assert code == 0 and out.startswith("flowchart TD\n")
    assert re.search(r"n\d+_start\(\[\"Start \(start\)\"\]\)", out)
    assert re.search(
        r"_waiting_for_status -\.->\|\"after .*status_timeout.*\"\| n\d+_reconcile", out
    )
    assert re.search(r"_calling_api -\.->\|\"error\"\| n\d+_api_error", out)

    code, out, _ = run(capsys, sqlite_url, "process", "graph", "notify-customer", "--format", "dot")
    assert code == 0 and out.startswith('digraph "notify-customer" {')
    assert '"send_sms" -> "check_failure" [label="error", style=dashed];' in out

    code, _, err = run(capsys, sqlite_url, "process", "export", "nope")
    assert code == 1 and "no process 'nope'" in err
    code, _, err = run(capsys, sqlite_url, "process", "graph", "sending-sms", "--version", "9")
    assert code == 1 and "no version 9" in err
