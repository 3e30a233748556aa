"""Scale-out on PostgreSQL with real OS processes: a Twilio simulator, API servers
(``serve --no-engine``) and several ``worker`` processes share one database. Nothing may
be lost (every task reaches a final node), nothing may happen twice (one Twilio create
per task, each callback status applied once, each timer fired once) — also when workers
are killed or stopped in the middle of the load.

PostgreSQL only: the sqlite run of ``db_url`` is skipped (one engine per SQLite file).
Logs of every process are under the test's tmp_path; their tails are printed at teardown
(pytest shows them when a test fails).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from procs import (
    Cluster,
    Proc,
    Submitter,
    event_details,
    lease_owner_pids,
    process_id,
    rows,
    scalar,
    sms_body,
    transition_counts,
    unfinished,
)
from sqlalchemy import Engine, create_engine

pytestmark = pytest.mark.postgres

SMS_PATH = "/api/v1/processes/sending-sms/tasks"
SCALE_TASKS = int(os.environ.get("ORCH_SCALE_TASKS", "2000"))


@pytest.fixture
def pg_url(db_url: str) -> str:
    if db_url.startswith("sqlite"):
        pytest.skip("several engines need PostgreSQL (one engine per SQLite file)")
    return db_url


@pytest.fixture
def cluster(pg_url: str, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(pg_url, tmp_path)
    try:
        yield c
    finally:
        c.stop_all()
        # Shown by pytest only when the test failed.
        print(f"\n===== process logs ({tmp_path}) =====\n{c.tails(40)}")


@pytest.fixture
def db(pg_url: str) -> Iterator[Engine]:
    engine = create_engine(pg_url, pool_size=2, max_overflow=2)
    try:
        yield engine
    finally:
        engine.dispose()


# -- helpers ------------------------------------------------------------------------------
def _alive_check(cluster: Cluster, procs: list[Proc]) -> Callable[[], None]:
    def check() -> None:
        dead = [p for p in procs if not p.alive()]
        if dead:
            names = ", ".join(f"{p.name} (exit {p.popen.returncode})" for p in dead)
            raise AssertionError(f"process died: {names}\n{cluster.tails()}")

    return check


def _wait(
    what: str,
    done: Callable[[], bool],
    timeout: float,
    *,
    check: Callable[[], None] = lambda: None,
    tick: Callable[[], None] = lambda: None,
    interval: float = 0.3,
    state: Callable[[], object] = lambda: "",
) -> float:
    """Poll until ``done()``; AssertionError after ``timeout`` seconds (with ``state()``
    in the message). Returns the seconds it took."""
    started = time.monotonic()
    while not done():
        check()
        tick()
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}: {state()}")
        time.sleep(interval)
    return time.monotonic() - started


def _lease_counts(db: Engine) -> Counter[int]:
    counts: Counter[int] = Counter()
    for owner, n in rows(
        db,
        "SELECT lease_owner, count(*) FROM tasks WHERE lease_owner IS NOT NULL "
        "GROUP BY lease_owner",
    ):
        parts = str(owner).split(":")
        if len(parts) >= 3 and parts[-2].isdigit():
            counts[int(parts[-2])] += int(n)
    return counts


def _busiest(db: Engine, workers: list[Proc]) -> Proc:
    """The live worker holding the most leases right now (work in flight to interrupt)."""
    counts = _lease_counts(db)
    alive = [w for w in workers if w.alive()]
    return max(alive, key=lambda w: counts.get(w.pid, 0))


def _sending_tasks(db: Engine, pid: int) -> list[dict[str, Any]]:
    out = []
    for r in rows(
        db,
        "SELECT id, ref, node_id, state, outcome, data FROM tasks WHERE process_id = :pid",
        pid=pid,
    ):
        out.append(
            {
                "id": r.id,
                "ref": r.ref,
                "node": r.node_id,
                "state": r.state,
                "outcome": r.outcome,
                "data": json.loads(r.data),
            }
        )
    return out


def _assert_calling_api_once(db: Engine, sms_pid: int, expected: int) -> None:
    counts = transition_counts(db, sms_pid, "calling_api")
    assert len(counts) == expected
    bad = {t: c for t, c in counts.items() if c != (1, 1)}
    assert not bad, (
        f"{len(bad)} tasks entered/left calling_api other than once (in, out): "
        f"{list(bad.items())[:10]}"
    )


def _assert_statuses_applied_once(db: Engine, sms_pid: int, gc_pid: int) -> None:
    """Each Twilio status is applied once to its "Getting callback" task, and written once
    onto the original task."""
    for task_id, details in event_details(db, gc_pid, "callback").items():
        statuses = [d["fields"].get("MessageStatus") for d in details]
        assert len(statuses) == len(set(statuses)), (task_id, statuses)
    for task_id, details in event_details(db, sms_pid, "callback").items():
        statuses = [d["fields"].get("status") for d in details]
        assert len(statuses) == len(set(statuses)), (task_id, statuses)


def _assert_one_message_per_task(
    cluster: Cluster, tasks: list[dict[str, Any]]
) -> tuple[int, set[str]]:
    """The simulator's messages are exactly the tasks' sids, one per To number."""
    messages = cluster.sim_messages()
    stats = cluster.sim_stats()
    assert stats["messages_created"] == len(messages)
    per_to = Counter(m["to"] for m in messages)
    twice = {to: n for to, n in per_to.items() if n > 1}
    assert not twice, f"messages created twice for the same task (To): {twice}"
    task_sids = [t["data"]["sid"] for t in tasks if t["data"].get("sid")]
    assert len(task_sids) == len(set(task_sids)), "two tasks share a sid"
    sim_sids = {m["sid"] for m in messages}
    orphans = sim_sids - set(task_sids)
    by_to = {t["data"]["Number_to"]: t for t in tasks}
    assert not orphans, (
        f"{len(orphans)} messages were created that no task knows about (the task's "
        "To, ref, node, code): "
        + repr(
            [
                (to, by_to[to]["ref"], by_to[to]["node"], by_to[to]["data"].get("code"))
                for to in sorted({m["to"] for m in messages if m["sid"] in orphans})
                if to in by_to
            ][:10]
        )
        + f"; steps dropped after a lease takeover: {_takeovers(cluster)}"
    )
    assert set(task_sids) <= sim_sids, "a task has a sid the simulator never issued"
    return stats["messages_created"], sim_sids


def _assert_no_callback_left_pending(db: Engine) -> None:
    """Every stored callback was applied, or recorded as late/ignored in its task's
    history: none is left pending for a task that has finished."""
    leftover = rows(
        db,
        """
        SELECT c.id, c.ref, c.payload, t.state, t.node_id FROM callbacks c
        LEFT JOIN tasks t ON t.process_id = c.process_id AND t.ref = c.ref
        WHERE c.status IN ('new', 'pending')
        """,
    )
    assert not leftover, (
        f"{len(leftover)} callbacks left pending (never applied nor recorded) although "
        "their task finished (id, ref, task state, task node, payload): "
        f"{[(r.id, r.ref, r.state, r.node_id, r.payload[:60]) for r in leftover[:5]]}"
    )


def _takeovers(cluster: Cluster) -> int:
    """Steps a live worker dropped because another worker took the task over (its lease
    had expired while the step ran)."""
    return cluster.count_in_logs("changed under this worker")


def _inbox(db: Engine) -> dict[str, int]:
    return {
        f"{form}/{status}": int(n)
        for form, status, n in rows(
            db, "SELECT form, status, count(*) FROM callbacks GROUP BY form, status"
        )
    }


def _posted(cluster: Cluster) -> int:
    stats = cluster.sim_stats()
    return stats["callbacks_sent"] + stats["callbacks_failed"]


def _wait_callbacks_settled(
    cluster: Cluster, db: Engine, expected_posts: int, check: Callable[[], None]
) -> None:
    """Every status callback the simulator will post has been answered, and the inbox has
    nothing left unread."""
    _wait(
        "the simulator's status callbacks",
        lambda: _posted(cluster) >= expected_posts,
        60,
        check=check,
        state=lambda: {"expected_posts": expected_posts, **cluster.sim_stats()},
    )
    _wait(
        "the callback inbox to be read",
        lambda: scalar(db, "SELECT count(*) FROM callbacks WHERE status = 'new'") == 0,
        30,
        check=check,
        state=lambda: _inbox(db),
    )


# -- tests ------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(900)  # its own waits are bounded (budget below); this is the backstop
def test_many_processes_share_the_work(cluster: Cluster, db: Engine) -> None:
    n = SCALE_TASKS
    cluster.start_sim("--duplicate", "--reorder")
    apis = [cluster.start_api(), cluster.start_api()]
    workers = [cluster.start_worker() for _ in range(3)]
    check = _alive_check(cluster, [*apis, *workers])
    sms_pid, gc_pid = process_id(db, "sending-sms"), process_id(db, "getting-callback")

    started = time.monotonic()
    sub = Submitter(cluster.api_urls, SMS_PATH, [sms_body(i, f"load-{i}") for i in range(n)])
    sub.start()
    seen: set[int] = set()
    budget = max(150.0, n * 0.15)  # about 2.5 times what 2,000 took on 2 cores
    sub.wait_for(n, budget, check=check)
    sub.join(10)
    assert not sub.errors, sub.errors[:10]
    assert len(sub.task_ids) == n
    submitted = time.monotonic() - started

    _wait(
        f"{n} Sending SMS tasks to finish",
        lambda: unfinished(db, sms_pid) == 0,
        budget,
        check=check,
        tick=lambda: seen.update(lease_owner_pids(db)),
    )
    finished = time.monotonic() - started
    # 2 statuses (sent, delivered) per message, each posted twice (--duplicate).
    _wait_callbacks_settled(cluster, db, 4 * cluster.sim_stats()["messages_created"], check)
    print(
        f"\n{n} SMS through 2 API + 3 worker processes: submitted in {submitted:.1f} s, "
        f"all final after {finished:.1f} s; engines seen holding leases: {sorted(seen)}; "
        f"steps dropped after lease takeovers: {_takeovers(cluster)}"
    )

    tasks = _sending_tasks(db, sms_pid)
    assert len(tasks) == n
    created, _ = _assert_one_message_per_task(cluster, tasks)
    wrong = [
        t
        for t in tasks
        if (t["state"], t["outcome"], t["node"]) != ("done", "success", "delivered")
    ]
    assert not wrong, (
        f"{len(wrong)} tasks did not end delivered "
        f"(steps dropped after lease takeovers: {_takeovers(cluster)}): {wrong[:3]}"
    )
    assert created == n
    assert cluster.sim_stats()["callbacks_failed"] == 0
    _assert_calling_api_once(db, sms_pid, n)

    children = rows(
        db,
        "SELECT parent_task_id, count(*), min(state), max(state), min(node_id) FROM tasks "
        "WHERE process_id = :pid GROUP BY parent_task_id",
        pid=gc_pid,
    )
    assert len(children) == n
    assert all(c[1] == 1 for c in children), "a task was copied to Getting callback twice"
    assert all((c[2], c[3], c[4]) == ("done", "done", "final_status") for c in children)
    _assert_statuses_applied_once(db, sms_pid, gc_pid)
    assert scalar(db, "SELECT count(*) FROM tasks WHERE state <> 'done'") == 0
    # Each (sid, status) is stored once, however often Twilio posted it.
    assert scalar(db, "SELECT count(*) FROM callbacks WHERE form = 'twilio'") == 2 * n

    assert all(w.alive() for w in workers)
    # Shared: each worker's log says which messages it sent. (Leases seen while polling
    # were the evidence once; a lease lasts a step, so a quick run can show only one.)
    sent_by = {
        w.pid: w.log_path.read_text(errors="replace").count("Twilio message created")
        for w in workers
    }
    assert sum(1 for count in sent_by.values() if count >= n // 20) >= 2, (
        f"fewer than two workers sent a twentieth of the messages or more: {sent_by}"
    )
    _assert_no_callback_left_pending(db)


@pytest.mark.slow
def test_killed_workers_lose_nothing(cluster: Cluster, db: Engine) -> None:
    n = 400
    cluster.start_sim("--duplicate", "--reorder")
    apis = [cluster.start_api(), cluster.start_api()]
    workers = [cluster.start_worker() for _ in range(3)]
    sms_pid, gc_pid = process_id(db, "sending-sms"), process_id(db, "getting-callback")

    def check() -> None:
        _alive_check(cluster, [*apis, *[w for w in workers if w not in killed]])()

    killed: list[Proc] = []

    def kill_busiest() -> None:
        victim = _busiest(db, workers)
        leases = _lease_counts(db).get(victim.pid, 0)
        cluster.kill(victim)
        killed.append(victim)
        workers.append(cluster.start_worker())
        print(f"killed {victim.name} (pid {victim.pid}) holding {leases} leases")

    sub = Submitter(cluster.api_urls, SMS_PATH, [sms_body(i, f"kill-{i}") for i in range(n)])
    sub.start()
    sub.wait_for(n // 3, 120, check=check)
    _wait("a worker to hold leases", lambda: bool(_lease_counts(db)), 30, interval=0.05)
    kill_busiest()
    sub.wait_for(n, 120, check=check)
    sub.join(10)
    assert not sub.errors, sub.errors[:10]
    assert len(sub.task_ids) == n
    time.sleep(1.0)
    kill_busiest()
    last_kill = time.monotonic()

    took = _wait(
        f"{n} Sending SMS tasks to finish after the kills",
        lambda: unfinished(db, sms_pid) == 0,
        120,
        check=check,
    )

    tasks = _sending_tasks(db, sms_pid)
    assert len(tasks) == n
    delivered = [t for t in tasks if (t["outcome"], t["node"]) == ("success", "delivered")]
    unknown = [
        t
        for t in tasks
        if (t["outcome"], t["node"], t["data"].get("code"))
        == ("escalation", "api_error", "TWILIO_OUTCOME_UNKNOWN")
    ]
    other = [t for t in tasks if t not in delivered and t not in unknown]
    assert not other, f"{len(other)} tasks ended elsewhere: {other[:5]}"
    assert all(not t["data"].get("sid") for t in unknown)
    created, _ = _assert_one_message_per_task(cluster, tasks)
    assert created == len([t for t in tasks if t["data"].get("sid")])
    _assert_calling_api_once(db, sms_pid, n)

    # Statuses come for every message that exists; let them all be read.
    _wait_callbacks_settled(cluster, db, 4 * created, check)
    _assert_statuses_applied_once(db, sms_pid, gc_pid)
    _wait(
        "Getting callback tasks to finish",
        lambda: unfinished(db, gc_pid) == 0,
        30,
        check=check,
    )
    children = rows(
        db,
        "SELECT parent_task_id, count(*) FROM tasks WHERE process_id = :pid "
        "GROUP BY parent_task_id",
        pid=gc_pid,
    )
    assert len(children) == created and all(c[1] == 1 for c in children)
    assert scalar(db, "SELECT count(*) FROM tasks WHERE state <> 'done'") == 0
    adopted = scalar(
        db, "SELECT count(*) FROM effects WHERE result LIKE :pat", pat='%"adopted":true%'
    )
    print(
        f"\n{n} SMS, 2 workers killed: {len(delivered)} delivered, {len(unknown)} "
        f"TWILIO_OUTCOME_UNKNOWN, {adopted} messages adopted after a kill; "
        f"settled {took:.1f} s after the last kill "
        f"({time.monotonic() - last_kill:.1f} s incl. checks)"
    )


TIMER_PROCESS = {
    "slug": "timer-once",
    "title": "Timer fires once",
    "nodes": {
        "start": {"kind": "start", "logics": [{"type": "go", "to": "wait"}]},
        "wait": {
            "kind": "wait",
            "time_limit": {"after": 1, "to": "timed_out"},
            "logics": [{"type": "wait_callback"}, {"type": "go", "to": "ok"}],
        },
        "ok": {"kind": "success"},
        "timed_out": {"kind": "escalation"},
    },
}


def test_timers_fire_once_across_processes(cluster: Cluster, db: Engine) -> None:
    n = 300
    api = cluster.start_api()
    workers = [cluster.start_worker() for _ in range(3)]
    check = _alive_check(cluster, [api, *workers])
    r = httpx.post(f"{api.url}/api/v1/processes", json=TIMER_PROCESS, timeout=30)
    assert r.status_code == 201, r.text
    pid = process_id(db, "timer-once")

    bodies = [{"ref": f"timer-{i}", "data": {"i": i}} for i in range(n)]
    sub = Submitter(cluster.api_urls, "/api/v1/processes/timer-once/tasks", bodies)
    sub.start()
    sub.wait_for(n, 60, check=check)
    sub.join(10)
    assert not sub.errors, sub.errors[:10]
    seen: set[int] = set()
    _wait(
        f"{n} timers to fire",
        lambda: unfinished(db, pid) == 0,
        60,
        check=check,
        tick=lambda: seen.update(lease_owner_pids(db)),
        interval=0.1,
    )

    ends = Counter(
        (r.node_id, r.outcome)
        for r in rows(db, "SELECT node_id, outcome FROM tasks WHERE process_id = :pid", pid=pid)
    )
    assert ends == {("timed_out", "escalation"): n}
    fired = Counter(
        r[0]
        for r in rows(
            db,
            "SELECT e.task_id FROM task_events e JOIN tasks t ON t.id = e.task_id "
            "WHERE t.process_id = :pid AND e.kind = 'time_limit'",
            pid=pid,
        )
    )
    assert len(fired) == n and set(fired.values()) == {1}, (
        f"timers fired more than once: {[(t, k) for t, k in fired.items() if k != 1][:10]}"
    )
    into_wait = transition_counts(db, pid, "wait")
    assert set(into_wait.values()) == {(1, 1)}, "a task entered or left 'wait' twice"
    out = Counter(
        r[0]
        for r in rows(
            db,
            "SELECT e.task_id FROM task_events e JOIN tasks t ON t.id = e.task_id "
            "WHERE t.process_id = :pid AND e.kind = 'transition' "
            "AND e.node_id = 'wait' AND e.to_node_id = 'timed_out'",
            pid=pid,
        )
    )
    assert len(out) == n and set(out.values()) == {1}
    # No timer fired early: not before the time limit counted from the task's creation
    # (the deadline is set when the step that enters 'wait' runs, before its commit).
    early = rows(
        db,
        """
        SELECT c.task_id, f.at - c.at FROM task_events c
        JOIN task_events f ON f.task_id = c.task_id AND f.kind = 'time_limit'
        JOIN tasks t ON t.id = c.task_id
        WHERE t.process_id = :pid AND c.kind = 'created' AND f.at - c.at < 1.0
        """,
        pid=pid,
    )
    assert not early, f"timers fired before their time limit: {early[:5]}"
    assert all(w.alive() for w in workers)
    print(f"\n{n} timers, engines seen holding leases: {sorted(seen & {w.pid for w in workers})}")


@pytest.mark.slow
def test_graceful_shutdown_leaves_no_step_half_done(cluster: Cluster, db: Engine) -> None:
    n = 300
    cluster.start_sim()
    api = cluster.start_api()
    workers = [cluster.start_worker() for _ in range(2)]
    sms_pid = process_id(db, "sending-sms")

    sub = Submitter(cluster.api_urls, SMS_PATH, [sms_body(i, f"term-{i}") for i in range(n)])
    sub.start()
    sub.wait_for(n // 3, 60, check=_alive_check(cluster, [api, *workers]))
    # Stop a worker while it has steps in flight.
    _wait("a worker to hold leases", lambda: bool(_lease_counts(db)), 30, interval=0.05)
    victim = _busiest(db, workers)
    leases = _lease_counts(db).get(victim.pid, 0)
    code, took = cluster.terminate(victim, timeout=15)
    assert code == 0, f"{victim.name} (holding {leases} leases) exit code {code} after {took:.1f} s"
    kept = scalar(
        db,
        "SELECT count(*) FROM tasks WHERE state = 'active' AND lease_owner LIKE :owner",
        owner=f"%:{victim.pid}:%",
    )
    assert kept == 0, f"{victim.name} stopped but still holds {kept} leases"
    survivor = next(w for w in workers if w is not victim)
    check = _alive_check(cluster, [api, survivor])

    sub.wait_for(n, 60, check=check)
    sub.join(10)
    assert not sub.errors, sub.errors[:10]
    _wait(
        f"{n} tasks to finish on the other worker",
        lambda: unfinished(db, sms_pid) == 0,
        120,
        check=check,
    )

    tasks = _sending_tasks(db, sms_pid)
    assert len(tasks) == n
    created, _ = _assert_one_message_per_task(cluster, tasks)
    wrong = [t for t in tasks if (t["outcome"], t["node"]) != ("success", "delivered")]
    assert not wrong, (
        f"{len(wrong)} tasks did not end delivered "
        f"(steps dropped after lease takeovers: {_takeovers(cluster)}): {wrong[:3]}"
    )
    assert created == n
    _assert_calling_api_once(db, sms_pid, n)
    log = victim.log_path.read_text(errors="replace")
    assert "Traceback" not in log, f"{victim.name} did not stop cleanly:\n{victim.tail(60)}"
    print(
        f"\nSIGTERM to {victim.name} holding {leases} leases: exit 0 after {took:.1f} s; "
        f"all {n} delivered"
    )
