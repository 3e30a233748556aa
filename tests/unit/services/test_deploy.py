"""Deploying definitions: versions by content, cross-process checks, error paths."""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from orchestrator.config import Settings
from orchestrator.engine.definition import DefinitionError
from orchestrator.engine.runtime import Runtime
from orchestrator.services.deploy import SHIPPED_DIR, deploy_definitions, ensure_shipped, read_file
from orchestrator.store.tables import process_versions, processes


@pytest.fixture
def rt(sqlite_url: str) -> Runtime:
    runtime = Runtime(Settings(database_url=sqlite_url))
    ensure_shipped(runtime)
    return runtime


def _sending_sms() -> dict[str, Any]:
    from orchestrator.services.deploy import SHIPPED_DIR

    return read_file(SHIPPED_DIR / "sending-sms.yaml")


def test_reordering_keys_is_not_a_new_version(rt: Runtime) -> None:
    raw = _sending_sms()
    reordered = dict(reversed(list(raw.items())))
    reordered["nodes"] = dict(reversed(list(raw["nodes"].items())))
    [result] = deploy_definitions(rt, [(reordered, "reordered.yaml")])
    assert (result.created, result.version) == (False, 1)


def test_status_callback_must_name_a_wait_node(rt: Runtime) -> None:
    raw = copy.deepcopy(_sending_sms())
    raw["nodes"]["calling_api"]["logics"][0]["status_callback"]["node"] = "final_status"
    with pytest.raises(DefinitionError) as err:
        deploy_definitions(rt, [(raw, "bad.yaml")])
    assert err.value.node == "calling_api"
    assert err.value.field == "logics[0].status_callback.node"
    assert "waiting_for_callback" in str(err.value)


def test_an_error_path_cannot_end_in_success(rt: Runtime) -> None:
    raw = copy.deepcopy(_sending_sms())
    raw["nodes"]["calling_api"]["on_error"] = "delivered"
    with pytest.raises(DefinitionError) as err:
        deploy_definitions(rt, [(raw, "bad.yaml")])
    assert (err.value.node, err.value.field) == ("calling_api", "logics[0].on_error")
    raw = copy.deepcopy(_sending_sms())
    raw["on_error"] = "delivered"
    with pytest.raises(DefinitionError) as err:
        deploy_definitions(rt, [(raw, "bad.yaml")])
    assert err.value.field == "on_error"


@pytest.mark.parametrize("number", [".nan", ".inf", "-.Inf"])
def test_a_file_with_nan_or_infinity_is_refused(tmp_path: Path, number: str) -> None:
    """YAML reads these as floats; set into a task, no answer about it could be written."""
    path = tmp_path / "p.yaml"
    path.write_text(
        "slug: p\ntitle: P\nnodes:\n  start:\n    kind: start\n    logics:\n"
        f"      - {{type: set_param, set: {{x: [1, {number}]}}}}\n"
        "      - {type: go, to: done}\n  done: {kind: success}\n  bad: {kind: escalation}\n"
    )
    with pytest.raises(DefinitionError) as err:
        read_file(path)
    assert (err.value.file, err.value.node) == (str(path), "start")
    assert err.value.field == "logics[0].set.x[1]"
    path.write_text(path.read_text().replace(number, "1.5"))
    assert read_file(path)["nodes"]["start"]["logics"][0]["set"]["x"] == [1, 1.5]


def test_processes_starting_together_deploy_the_shipped_processes_once(db_url: str) -> None:
    """M workers started at once on an empty database all run ensure_shipped; they once
    raced to insert the same slug and all but one crashed (PostgreSQL)."""
    runtimes = [Runtime(Settings(database_url=db_url)) for _ in range(4)]
    start = threading.Barrier(len(runtimes))
    errors: list[BaseException] = []

    def boot(rt: Runtime) -> None:
        start.wait()
        try:
            ensure_shipped(rt)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=boot, args=(rt,)) for rt in runtimes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert not errors, errors
        with runtimes[0].db.read() as conn:
            slugs = conn.execute(select(processes.c.slug, processes.c.current_version)).all()
            versions = conn.execute(select(func.count()).select_from(process_versions)).scalar()
        shipped = {read_file(p)["slug"] for p in SHIPPED_DIR.glob("*.yaml")}
        assert sorted(s for s, _ in slugs) == sorted(shipped)
        assert {v for _, v in slugs} == {1} and versions == len(shipped)
    finally:
        for rt in runtimes:
            rt.db.dispose()
