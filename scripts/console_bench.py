"""Console page render times with many tasks in the database (issue 7: under 200 ms).

Seeds N "Sending SMS" tasks (default 100,000) spread over its nodes like a real day
(mostly delivered, some escalated, some waiting), each with a few history events, and a
"Getting callback" copy for one in ten; then renders each console page several times
in-process (routing, database, templates; no network) and prints the times.

    .venv/bin/python scripts/console_bench.py [-n 100000] [--db URL] [--repeat 7]

Without --db it uses a fresh SQLite file in a temporary directory. Not a test: run it
by hand after changing a query or an index.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from orchestrator.config import Settings
from orchestrator.engine.runtime import Runtime
from orchestrator.services.deploy import ensure_shipped
from orchestrator.store.db import upgrade
from orchestrator.store.tables import task_events, tasks

warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
from starlette.testclient import TestClient  # noqa: E402

from orchestrator.http.app import create_app  # noqa: E402
from orchestrator.http.console import pages as console_pages  # noqa: E402

# (node, state, outcome, share of tasks)
SPREAD = [
    ("delivered", "done", "success", 0.80),
    ("sms_not_delivered", "done", "escalation", 0.07),
    ("api_error", "done", "escalation", 0.03),
    ("waiting_for_status", "waiting", None, 0.08),
    ("calling_api", "active", None, 0.02),
]
BATCH = 5000


def _seed(rt: Runtime, n: int) -> dict[str, Any]:
    rng = random.Random(7)
    with rt.db.read() as conn:
        sms = rt.process(conn, "sending-sms")
        cb = rt.process(conn, "getting-callback")
    start = time.time() - n  # one task a second, the newest now
    picks: list[tuple[str, str, str | None]] = []
    for node, state, outcome, share in SPREAD:
        picks += [(node, state, outcome)] * int(n * share)
    picks += [SPREAD[0][:3]] * (n - len(picks))
    rng.shuffle(picks)
    sample: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for i, (node, state, outcome) in enumerate(picks):
        tid = f"{int(start + i):08x}{rng.getrandbits(64):016x}"
        sid = f"SM{rng.getrandbits(128):032x}"
        phone = f"+1555{i:07d}"
        at = start + i
        data = {"Number_to": phone, "Number_from": "+15005550006", "Body": f"order {i} shipped"}
        if node != "api_error":
            data.update(sid=sid, status="delivered" if outcome == "success" else "sent")
        if node in ("api_error", "sms_not_delivered"):
            data["code"] = 21211 if node == "api_error" else 30003
        rows.append(_row(tid, sms.id, sms.version_id, node, state, outcome, data, at, f"o-{i}"))
        events += [
            _event(tid, at, "created", None, "start"),
            _event(tid, at + 0.1, "transition", "start", "calling_api"),
            _event(tid, at + 0.2, "transition", "calling_api", node),
        ]
        if i % 10 == 0 and node != "api_error":
            cid = f"{int(at):08x}{rng.getrandbits(64):016x}"
            row = _row(
                cid, cb.id, cb.version_id, "final_status", "done", "success", {"sid": sid}, at, sid
            )
            row["parent_task_id"] = tid
            rows.append(row)
            events.append(_event(cid, at + 0.3, "callback", "waiting_for_callback", None))
        if i == n // 2:
            sample = {"task_id": tid, "ref": f"o-{i}", "sid": sid, "phone": phone}
        if len(rows) >= BATCH:
            _flush(rt, rows, events)
    _flush(rt, rows, events)
    return sample


def _row(
    tid: str,
    pid: int,
    vid: int,
    node: str,
    state: str,
    outcome: str | None,
    data: dict[str, Any],
    at: float,
    ref: str,
) -> dict[str, Any]:
    import json

    return {
        "id": tid,
        "process_id": pid,
        "version_id": vid,
        "ref": ref,
        "active_ref": ref if state != "done" else None,
        "node_id": node,
        "state": state,
        "outcome": outcome,
        "data": json.dumps(data),
        "created_at": at,
        "updated_at": at + 0.5,
        "finished_at": at + 0.5 if state == "done" else None,
        "wake_at": at + 86400 if state == "waiting" else None,
    }


def _event(tid: str, at: float, kind: str, node: str | None, to: str | None) -> dict[str, Any]:
    return {
        "task_id": tid,
        "at": at,
        "kind": kind,
        "node_id": node,
        "to_node_id": to,
        "detail": None,
    }


def _flush(rt: Runtime, rows: list[dict[str, Any]], events: list[dict[str, Any]]) -> None:
    with rt.db.write() as conn:
        if rows:
            conn.execute(tasks.insert(), rows)
        if events:
            conn.execute(task_events.insert(), events)
    rows.clear()
    events.clear()


def _time(client: TestClient, path: str, repeat: int) -> tuple[float, float, int]:
    times = []
    status = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = client.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        status = r.status_code
    return statistics.median(times), max(times), status


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=100_000)
    ap.add_argument("--db", default=None, help="database URL (default: a temporary SQLite file)")
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args(argv)
    tmp = tempfile.TemporaryDirectory()
    url = args.db or f"sqlite:///{Path(tmp.name) / 'bench.db'}"
    upgrade(url)
    settings = Settings(database_url=url, secret="bench-secret")
    rt = Runtime(settings)
    ensure_shipped(rt)
    t0 = time.perf_counter()
    sample = _seed(rt, args.n)
    if rt.db.is_postgres:
        # What autovacuum does soon after a bulk load: statistics and the visibility map
        # (without it PostgreSQL cannot answer counts from the index alone).
        with rt.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE tasks")
            conn.exec_driver_sql("VACUUM ANALYZE task_events")
    print(f"seeded {args.n} tasks in {time.perf_counter() - t0:.1f} s ({url.split(':')[0]})")
    console_pages.COUNTS_TTL = 0.0  # time the counters query itself, not the cache in front of it
    app = create_app(settings, runtime=rt, run_engine=False)
    with TestClient(app, client=("127.0.0.1", 50000), follow_redirects=False) as c:
        first = c.get("/console/processes/sending-sms/nodes/delivered").text
        cursor = first.split('rel="next" href="')[1].split('"')[0].replace("&amp;", "&")
        listing = "/console/processes/sending-sms/tasks"
        older = c.get(listing).text.split('rel="next" href="')[1].split('"')[0]
        older = listing + older.replace("&amp;", "&")
        middle = time.time() - args.n / 2
        hour = f"since={middle:.0f}&until={middle + 3600:.0f}"
        pages = [
            ("processes", "/console"),
            ("process (graph + counters)", "/console/processes/sending-sms"),
            ("counters (polled JSON)", "/console/processes/sending-sms/counts.json"),
            ("node tasks, newest page", "/console/processes/sending-sms/nodes/delivered"),
            ("node tasks, second page", cursor),
            ("node tasks, small node", "/console/processes/sending-sms/nodes/calling_api"),
            ("task + timeline", f"/console/tasks/{sample['task_id']}"),
            ("search: task id", f"/console/search?q={sample['task_id']}"),
            ("search: ref", f"/console/search?q={sample['ref']}"),
            ("search: message sid", f"/console/search?q={sample['sid']}"),
            ("search: phone number", f"/console/search?q=%2B{sample['phone'][1:]}"),
            ("search: phone, no match", "/console/search?q=%2B19995550000"),
            ("new task form", "/console/processes/sending-sms/new"),
            ("task page, polled JSON", f"/console/tasks/{sample['task_id']}/live.json"),
            ("tasks view, newest page", listing),
            ("tasks view, second page", older),
            ("tasks: state escalation", f"{listing}?state=escalation"),
            ("tasks: state active (2 %)", f"{listing}?state=active"),
            ("tasks: node api_error", f"{listing}?node=api_error"),
            ("tasks: an hour, mid-table", f"{listing}?{hour}"),
            ("tasks: code 30003", f"{listing}?code=30003"),
            ("tasks: code, no match (scan)", f"{listing}?code=99999"),
            ("tasks: ref", f"{listing}?q={sample['ref']}"),
            ("tasks: message sid", f"{listing}?q={sample['sid']}"),
            ("tasks: phone number", f"{listing}?q=%2B{sample['phone'][1:]}"),
        ]
        print(f"{'page':34} {'median ms':>10} {'max ms':>8}  status")
        worst = 0.0
        for name, path in pages:
            med, top, status = _time(c, path, args.repeat)
            worst = max(worst, med)
            print(f"{name:34} {med:10.1f} {top:8.1f}  {status}")
    print(f"slowest median: {worst:.1f} ms")
    rt.db.dispose()
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
