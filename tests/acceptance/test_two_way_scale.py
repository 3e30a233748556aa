"""Two-way SMS with several engines on PostgreSQL (real OS processes: a simulator, an
API server and three ``worker`` processes): each incoming message is applied once —
replies racing for the asks of one conversation each go to exactly one ask, and none
is lost or turned into an Incoming SMS task as well.

PostgreSQL only (one engine per SQLite file).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from procs import Cluster, process_id, rows, scalar
from sqlalchemy import Engine, create_engine

pytestmark = pytest.mark.postgres

PERSON = "+15551230001"
OURS = "+15005550006"
SAME_PAIR = 8  # asks waiting on one conversation, and as many replies racing for them
OTHER_PAIRS = 12  # asks whose recipients reply by simulator rule


@pytest.fixture
def pg_url(db_url: str) -> str:
    if db_url.startswith("sqlite"):
        pytest.skip("several engines need PostgreSQL (one engine per SQLite file)")
    return db_url


@pytest.fixture
def cluster(pg_url: str, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(pg_url, tmp_path, poll_interval=0.05)
    try:
        yield c
    finally:
        c.stop_all()
        print(f"\n===== process logs ({tmp_path}) =====\n{c.tails(40)}")


@pytest.fixture
def db(pg_url: str) -> Iterator[Engine]:
    engine = create_engine(pg_url, pool_size=2, max_overflow=2)
    try:
        yield engine
    finally:
        engine.dispose()


def _ask(api: httpx.Client, to: str) -> str:
    body = {"data": {"Number_to": to, "Number_from": OURS, "Body": "Confirm? YES/NO"}}
    r = api.post("/api/v1/processes/ask-sms/tasks", json=body)
    assert r.status_code == 201, r.text
    task_id: str = r.json()["task_id"]
    return task_id


def _wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_several_engines_apply_each_reply_once(cluster: Cluster, db: Engine) -> None:
    cluster.start_sim()
    api_proc = cluster.start_api()
    for _ in range(3):
        cluster.start_worker()
    with httpx.Client(base_url=api_proc.url, timeout=10) as api:
        view = api.get("/api/v1/processes/incoming-sms").json()
        start = next(n for n in view["nodes"] if n["kind"] == "start")
        rule = {"pattern": r"^\+1555999", "body": "YES", "delay": 0.3}
        httpx.post(
            f"{cluster.sim_url}/_sim/config",
            json={"incoming_url": start["callback_urls"]["twilio"], "reply_rules": [rule]},
        ).raise_for_status()
        same = [_ask(api, PERSON) for _ in range(SAME_PAIR)]
        # (+1555999000N: no simulator outcome rule matches; 0000 would be a lost message)
        others = [_ask(api, f"+1555999{i:04d}") for i in range(1, OTHER_PAIRS + 1)]
        ask_pid = process_id(db, "ask-sms")

        def waiting() -> bool:
            n = scalar(
                db,
                "SELECT count(*) FROM tasks WHERE process_id = :p AND node_id = 'waiting_for_reply'"
                " AND id = ANY(:ids)",
                p=ask_pid,
                ids=same,
            )
            return bool(n == SAME_PAIR)

        _wait(waiting, 30, "the asks of one pair to wait")
        bodies = [f"answer {i}" for i in range(SAME_PAIR)]

        def text(body: str) -> int:
            r = httpx.post(
                f"{cluster.sim_url}/_sim/incoming",
                json={"From": PERSON, "To": OURS, "Body": body},
                timeout=15,
            )
            status: int = r.json()["status"]
            return status

        with ThreadPoolExecutor(SAME_PAIR) as pool:
            assert list(pool.map(text, bodies)) == [200] * SAME_PAIR

        def finished() -> bool:
            n = scalar(
                db, "SELECT count(*) FROM tasks WHERE process_id = :p AND state = 'done'", p=ask_pid
            )
            return bool(n == SAME_PAIR + OTHER_PAIRS)

        _wait(finished, 60, "every ask to finish")
        replies = {
            r[0]: r[1]
            for r in rows(
                db,
                "SELECT id, data::json->>'reply' FROM tasks "
                "WHERE process_id = :p AND node_id = 'replied'",
                p=ask_pid,
            )
        }
        assert set(replies) == set(same) | set(others)
        assert sorted(replies[t] for t in same) == sorted(bodies)  # each reply to one ask
        assert all(replies[t] == "YES" for t in others)
        # Each message was applied once, to one task, and none started an Incoming SMS task.
        applied = rows(db, "SELECT status, applied_task_id FROM callbacks WHERE form = 'reply'")
        assert Counter(s for s, _t in applied) == {"applied": SAME_PAIR + OTHER_PAIRS}
        assert len({t for _s, t in applied}) == SAME_PAIR + OTHER_PAIRS
        assert (
            scalar(
                db,
                "SELECT count(*) FROM tasks WHERE process_id = :p",
                p=process_id(db, "incoming-sms"),
            )
            == 0
        )
        assert scalar(db, "SELECT count(*) FROM reply_listeners") == 0


def test_racing_engines_never_give_one_listener_two_messages(pg_url: str) -> None:
    """Two engines deliver two messages of one conversation at the same moment: both
    read the same oldest listener, and both wait for its task's lock. The one that gets
    it second must see the listener gone and move on to the next task."""
    import threading

    from orchestrator.config import Settings
    from orchestrator.engine.deliveries import deliver
    from orchestrator.engine.incoming_sms import store_incoming
    from orchestrator.engine.runtime import Runtime
    from orchestrator.services.deploy import ensure_shipped
    from orchestrator.services.tasks import Service
    from orchestrator.store import callbacks as inbox
    from orchestrator.store import conversations
    from orchestrator.store.db import upgrade
    from orchestrator.twilio.simulator.incoming import incoming_params

    upgrade(pg_url)
    rt = Runtime(Settings(database_url=pg_url))
    ensure_shipped(rt)
    service = Service(rt)
    data = {"Number_to": PERSON, "Number_from": OURS, "Body": "?"}
    first, _ = asyncio.run(service.create_task("ask-sms", None, data))
    second, _ = asyncio.run(service.create_task("ask-sms", None, data))
    with rt.db.read() as conn:
        incoming = rt.process(conn, "incoming-sms")
    _pid, _v, definition = rt.definition(incoming.version_id)
    now = time.time()
    ids = []
    with rt.db.write() as conn:
        conversations.listen(conn, first["task_id"], PERSON, OURS, now)
        conversations.listen(conn, second["task_id"], PERSON, OURS, now + 1)
        for body in ("one", "two"):
            params = incoming_params("AC" + "0" * 32, PERSON, OURS, body)
            cb_id, _answer = store_incoming(
                conn,
                rt,
                incoming.id,
                definition.start,
                definition,
                dict(params),
                source_ip="test",
                now=now,
            )
            ids.append(cb_id)
    blocker_engine = create_engine(pg_url)
    blocker = blocker_engine.connect()
    blocker.begin()
    blocker.exec_driver_sql("SELECT id FROM tasks WHERE id = %s FOR UPDATE", (first["task_id"],))

    def apply(cb_id: int) -> None:
        with rt.db.write() as conn:
            cb = inbox.get_new(conn, cb_id)
            assert cb is not None
            deliver(conn, rt, cb, None, time.time())

    threads = [threading.Thread(target=apply, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    time.sleep(0.5)  # both now wait for the first task's lock
    blocker.rollback()
    blocker.close()
    for t in threads:
        t.join(10)
    owners = [
        r[0]
        for r in rows(
            blocker_engine, "SELECT task_id FROM callbacks WHERE id IN (:a, :b)", a=ids[0], b=ids[1]
        )
    ]
    blocker_engine.dispose()
    rt.db.dispose()
    assert sorted(owners) == sorted([first["task_id"], second["task_id"]])
