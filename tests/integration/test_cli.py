"""The ``orchestrator`` command line, run in-process against a SQLite database."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli import build_parser, main


def run(capsys: pytest.CaptureFixture[str], db: str, *args: str) -> tuple[int, str, str]:
    code = main(["--database-url", db, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_task_and_process_commands(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        sqlite_url,
        "task",
        "create",
        "getting-callback",
        "--ref",
        "SMcli",
        "--data",
        '{"copy_task_id": "x", "AuthToken": "hidden-1"}',
    )
    assert code == 0
    task = json.loads(out)
    assert task["ref"] == "SMcli" and task["node"]["id"] == "start"
    assert "hidden-1" not in out

    code, out, _ = run(capsys, sqlite_url, "task", "show", task["task_id"])
    assert code == 0 and json.loads(out)["task_id"] == task["task_id"]

    code, out, _ = run(capsys, sqlite_url, "task", "list", "getting-callback", "--ref", "SMcli")
    assert code == 0 and task["task_id"] in out and "active" in out

    code, out, _ = run(capsys, sqlite_url, "task", "history", task["task_id"])
    assert code == 0 and "created" in out

    code, out, _ = run(capsys, sqlite_url, "process", "list")
    assert code == 0 and "sending-sms" in out and "getting-callback" in out

    code, out, _ = run(capsys, sqlite_url, "process", "show", "getting-callback")
    assert code == 0
    assert "waiting_for_callback callback (twilio): " in out
    assert "/api/1/json/plugins/twilio/" in out and "/api/1/nvp/callback/" in out


def test_errors_are_clear(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, sqlite_url, "task", "show", "nope")
    assert code == 1 and "TASK_NOT_FOUND" in err
    code, _, err = run(capsys, sqlite_url, "task", "create", "sending-sms", "--data", "{oops")
    assert code == 2 and "not valid JSON" in err
    code, _, err = run(capsys, sqlite_url, "task", "create", "sending-sms", "--data", '{"a": NaN}')
    assert code == 2 and "not valid JSON: NaN is not JSON" in err
    code, _, err = run(capsys, sqlite_url, "process", "show", "missing")
    assert code == 1 and "PROCESS_NOT_FOUND" in err


def test_deploy_reports_changes_and_validation_errors(
    sqlite_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    src = tmp_path / "hello.yaml"
    src.write_text(
        "slug: hello\ntitle: Hello\nnodes:\n"
        "  start: {kind: start, logics: [{type: go, to: done}]}\n"
        "  done: {kind: success}\n  oops: {kind: escalation}\n"
    )
    code, out, _ = run(capsys, sqlite_url, "deploy", str(src))
    assert code == 0 and "deployed version 1" in out
    code, out, _ = run(capsys, sqlite_url, "deploy", str(src))
    assert code == 0 and "unchanged, still version 1" in out
    src.write_text(src.read_text().replace("title: Hello", "title: Hello again"))
    code, out, _ = run(capsys, sqlite_url, "deploy", str(src))
    assert code == 0 and "deployed version 2" in out and "~ title" in out

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "slug: bad\ntitle: Bad\nnodes:\n"
        "  start: {kind: start, logics: [{type: go, to: nowhere}]}\n"
        "  oops: {kind: escalation}\n"
    )
    code, _, err = run(capsys, sqlite_url, "deploy", str(bad))
    assert code == 2
    assert str(bad) in err and "'start'" in err and "logics[0].to" in err and "nowhere" in err


def test_unusable_database_is_one_line_without_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Port 1 refuses connections; a missing directory cannot hold a SQLite file.
    pg = "postgresql+psycopg://orch:hunter2@127.0.0.1:1/x"
    code, out, err = run(capsys, pg, "process", "list")
    assert code == 1 and out == ""
    assert err.startswith("error: cannot use the database postgresql+psycopg://orch:***@")
    assert "hunter2" not in err and "Traceback" not in err and err.count("\n") == 1

    missing = f"sqlite:///{tmp_path}/no/such/dir/x.db"
    code, _, err = run(capsys, missing, "db", "upgrade")
    assert code == 1 and "unable to open database file" in err

    code, _, err = run(capsys, "nosuchdialect://x", "task", "list", "sending-sms")
    assert code == 1 and "cannot use the database" in err


def _finished_task(db: str, capsys: pytest.CaptureFixture[str]) -> str:
    from orchestrator.config import Settings
    from orchestrator.engine.runtime import Runtime
    from orchestrator.store import tasks as task_store

    code, out, _ = run(capsys, db, "task", "create", "getting-callback", "--data", '{"n": 1}')
    assert code == 0
    task_id: str = json.loads(out)["task_id"]
    rt = Runtime(Settings(database_url=db))
    with rt.db.write() as conn:
        task = task_store.get_task(conn, task_id)
        assert task is not None
        task.state, task.outcome, task.finished_at = "done", "success", time.time() - 60
        assert task_store.save_task(conn, task, task.rev)
    return task_id


def test_purge_keeps_everything_when_retention_is_off(
    sqlite_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = _finished_task(sqlite_url, capsys)
    monkeypatch.setenv("ORCH_RETENTION_DAYS", "0")
    code, out, _ = run(capsys, sqlite_url, "purge")
    assert code == 0 and "retention is off" in out
    code, _, err = run(capsys, sqlite_url, "purge", "--older-than-days", "-1")
    assert code == 2 and "--older-than-days must be 0 or more" in err
    assert run(capsys, sqlite_url, "task", "show", task_id)[0] == 0  # still there

    # An explicit cutoff is the operator's choice: 0 days takes every finished task.
    code, out, _ = run(capsys, sqlite_url, "purge", "--older-than-days", "0")
    assert code == 0 and "purged 1 finished task(s)" in out
    assert run(capsys, sqlite_url, "task", "show", task_id)[0] == 1


def test_bad_environment_value_is_named(
    sqlite_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCH_LEASE_SECONDS", "abc")
    code, _, err = run(capsys, sqlite_url, "process", "list")
    assert (code, err) == (2, "error: ORCH_LEASE_SECONDS must be a number, not 'abc'\n")


def _parsers(parser: argparse.ArgumentParser, name: str) -> Iterator[tuple[str, Any]]:
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child_name, child in action.choices.items():
                yield from _parsers(child, f"{name} {child_name}")


def test_every_option_has_help_with_its_default() -> None:
    for name, parser in _parsers(build_parser(), "orchestrator"):
        text = " ".join(parser.format_help().split())
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help, f"{name} {action.dest}: no help text"
            if action.default not in (None, False, argparse.SUPPRESS):
                assert f"default: {action.default}" in text, f"{name} {action.dest}"
