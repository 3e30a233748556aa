"""The store's statements with optional parts and the seldom-run ones, on both databases:
the console's task list and its filters, data search, opt-out lists, settings upserts,
API keys, leases, rotation reads and swaps, deploys, driver errors as SQLAlchemy's."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError
from test_sql import _task, db  # noqa: F401 (the fixture)

from orchestrator.store import apikeys, conversations, kv, processes, vaulted
from orchestrator.store import tasks as task_store
from orchestrator.store.db import Database


def test_list_tasks_filters_and_pages(db: Database) -> None:  # noqa: F811
    try:
        rows = [
            _task(db, f"l{n:023d}", ref=f"r{n}", data={"phone": f"+1_{n}%"}, created_at=n)
            for n in range(6)
        ]
        rows[5].state, rows[5].outcome, rows[5].ref = "done", "success", None
        with db.write() as conn:
            for task in rows:
                task_store.insert_task(conn, task)
        pid = rows[0].process_id
        with db.read() as conn:

            def ids(**kw: object) -> list[str]:
                found = task_store.list_tasks(conn, pid, **kw)  # type: ignore[arg-type]
                return [t.id[-1] for t in found if t.id.startswith("l")]

            assert ids() == ["5", "4", "3", "2", "1", "0"]
            assert ids(ref="r3") == ["3"]
            assert ids(state="done", outcome="success") == ["5"]
            assert ids(node="start", limit=2) == ["5", "4"]
            assert ids(before=(4.0, rows[4].id)) == ["3", "2", "1", "0"]
            assert ids(since=1.0, until=3.0) == ["3", "2", "1"]
            assert ids(ids=[rows[0].id, rows[2].id]) == ["2", "0"]
            assert ids(ids=[]) == []
            # LIKE wildcards in the text are matched literally.
            assert ids(data_has=[("+1_2%", "+1_4%")]) == ["4", "2"]
            assert ids(data_has=[("+1_2%",), ("nothing",)]) == []
            assert ids(data_has=[("1x",)]) == []
            found = task_store.find_by_data_text(conn, "+1_3%")
            assert [t.id for t in found] == [rows[3].id]
            assert task_store.node_counts(conn, pid)["start"] >= 6
            assert task_store.state_counts(conn, pid)["success"] >= 1
    finally:
        db.dispose()


def test_leases_release_renew_defer(db: Database) -> None:  # noqa: F811
    try:
        task = _task(db, "m" * 24)
        with db.write() as conn:
            task_store.insert_task(conn, task)
            claimed = task_store.claim_runnable(conn, "w1", 50, 10**10, 30.0)
            assert task.id in [t.id for t in claimed]
            assert task_store.renew_leases(conn, "w1", [task.id], 2e10) == 1
            assert task_store.renew_leases(conn, "w2", [task.id], 2e10) == 0
            task_store.defer(conn, task.id, "w1", 3e10)
            assert task_store.get_task(conn, task.id).lease_until == 3e10  # type: ignore[union-attr]
            assert task_store.release_leases(conn, "w1", []) == 0
            assert task_store.release_leases(conn, "w1", [task.id]) == 1
            assert task_store.release_leases(conn, "w1") == 0
    finally:
        db.dispose()


def test_opt_outs_settings_and_keys(db: Database) -> None:  # noqa: F811
    try:
        with db.write() as conn:
            conversations.opt_out(conn, "+100", "+200", "keyword:STOP", 1.0)
            conversations.opt_out(conn, "+100", "+200", "keyword:STOP", 2.0)  # once
            conversations.opt_out(conn, "+101", "+200", "twilio:21610", 3.0)
            assert conversations.opted_out(conn, "+100", ["+300", "+200"]) == "+200"
            every = conversations.list_opt_outs(conn)
            assert [r["recipient"] for r in every][:2] == ["+101", "+100"]
            only = conversations.list_opt_outs(conn, recipient="+100", sender="+200")
            assert only == [
                {"recipient": "+100", "sender": "+200", "source": "keyword:STOP", "created_at": 1.0}
            ]
            assert conversations.opt_in(conn, "+100", "+200")
            kv.set_setting(conn, "k1", "a")
            kv.set_setting(conn, "k1", "b")
            assert kv.set_setting_if_absent(conn, "k1", "c") == "b"
            assert kv.get_setting(conn, "nope") is None
            kv.save_account_token(conn, "AC9", "t1", 1.0)
            kv.save_account_token(conn, "AC9", "t2", 2.0)
            assert kv.get_account_token(conn, "AC9") == "t2"
            assert apikeys.insert_key(conn, "k9", "h9", "e9", 1.0)
            assert not apikeys.insert_key(conn, "k9", "h8", "e8", 1.0)  # login taken
            assert not apikeys.insert_key(conn, "k8", "h9", "e8", 1.0)  # secret taken
            assert apikeys.get_key(conn, "k9").role == "operate"  # type: ignore[union-attr]
            assert apikeys.find_by_hash(conn, "h9").login == "k9"  # type: ignore[union-attr]
            assert apikeys.first_sighting(conn, "req1", 10.0, 0.0)
            assert not apikeys.first_sighting(conn, "req1", 11.0, 0.0)
            # Rotation: every sealed value is found, and swapped only if unchanged.
            stored = [s for s in vaulted.stored_values(conn, "SEALED") if s.key == "AC9"]
            assert stored == [vaulted.Stored("twilio_accounts", "AC9", "t2")]
            assert vaulted.replace_value(conn, stored[0], "t3")
            assert not vaulted.replace_value(conn, stored[0], "t4")
    finally:
        db.dispose()


def test_deploy_versions_and_driver_errors(db: Database) -> None:  # noqa: F811
    try:
        with db.write() as conn:
            processes.lock_deploys(conn)
            nodes = [{"node_id": "w", "title": "W", "kind": "wait"}]
            record, created = processes.deploy(
                conn, "lst", "L", {"a": 1}, nodes, source=None, now=5
            )
            assert created and record.definition == {"a": 1}
            again, created = processes.deploy(conn, "lst", "L", {"a": 1}, nodes, source=None, now=6)
            assert not created and again == record
            newer, created = processes.deploy(conn, "lst", "L2", {"a": 2}, [], source="f", now=7)
            assert created and newer.current_version == 2 and newer.title == "L2"
            assert processes.get_process(conn, str(record.id)) == newer
            assert [v["version"] for v in processes.list_versions(conn, record.id)] == [1, 2]
            assert processes.get_version(conn, newer.version_id) == (record.id, 2, {"a": 2})
            assert processes.wait_node_ids(conn, record.id) == ["w"]
        task = _task(db, "e" * 24)
        with db.write() as conn:
            task_store.insert_task(conn, task)
            with pytest.raises(IntegrityError), conn.begin_nested():
                task_store.insert_task(conn, task)  # a driver error, raised as SQLAlchemy's
            assert task_store.get_task(conn, task.id) is not None
    finally:
        db.dispose()
