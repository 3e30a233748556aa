"""``orchestrator bench``: round trips per second against the simulator on loopback.

Starts the simulator and the orchestrator as separate processes (``serve``, plus
``worker`` processes when --engine-processes > 1, which needs PostgreSQL), submits N
"Sending SMS" tasks over the REST API, and waits until every one is in a final node.
Latency is submit-to-final, read from the tasks' own timestamps; memory is each server
process's peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time

from orchestrator.bench import load, processes, reads, report
from orchestrator.bench.pg_watch import PG_STATS_DELAY, PgWatch
from orchestrator.bench.processes import BenchProcesses
from orchestrator.bench.progress import WalWatch, watch
from orchestrator.bench.sql_counts import delta, sql_report, total_counts
from orchestrator.servers import free_port
from orchestrator.store import sqlcount
from orchestrator.store.db import Database, upgrade

ACCOUNT = "AC" + "b" * 32
TOKEN = "bench-auth-token"


def run_bench(args: argparse.Namespace) -> int:
    workdir = tempfile.mkdtemp(prefix="orch-bench-")
    url = (
        getattr(args, "db", None)
        or args.database_url
        or os.environ.get("ORCH_BENCH_DATABASE_URL")
        or (f"sqlite:///{workdir}/bench.db")
    )
    db = Database(url)
    if args.engine_processes > 1 and db.is_sqlite:
        print(
            "--engine-processes > 1 needs PostgreSQL (--database-url postgresql://…)",
            file=sys.stderr,
        )
        return 2
    upgrade(url)
    sim_port, api_port = free_port(), free_port()
    env = {
        **os.environ,
        "ORCH_DATABASE_URL": url,
        "TWILIO_ACCOUNT_SID": ACCOUNT,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "ORCH_TWILIO_API_URL": f"http://127.0.0.1:{sim_port}",
        "ORCH_PUBLIC_URL": f"http://127.0.0.1:{api_port}",
        # The server processes count their SQL statements and transactions here.
        sqlcount.ENV: os.path.join(workdir, "sqlcounts"),
    }
    # The engine in processes of its own (several need PostgreSQL); serve is then the API.
    separate = args.engine_processes > 1 or bool(getattr(args, "separate_engine", False))
    procs = processes.start(env, workdir, sim_port, api_port, args.engine_processes, separate)
    status = 1
    try:
        status = asyncio.run(_run(args, db, procs, sim_port, api_port, workdir))
        return status
    finally:
        procs.stop()
        db.dispose()
        if status == 0:  # the database and the logs are only worth keeping after a failure
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"logs and database kept in {workdir}", file=sys.stderr)


async def _run(
    args: argparse.Namespace,
    db: Database,
    procs: BenchProcesses,
    sim_port: int,
    api_port: int,
    log_dir: str,
) -> int:
    deadline = time.time() + 30
    await load.wait_http(f"http://127.0.0.1:{sim_port}/_sim/stats", deadline)
    await load.wait_http(f"http://127.0.0.1:{api_port}/healthz", deadline)
    waiting = bool(getattr(args, "waiting", False))
    print(
        f"bench: {args.tasks} SMS round trips, {args.engine_processes} engine process(es), "
        f"database {db.engine.url.get_backend_name()}"
        + (" (tasks left waiting)" if waiting else ""),
        flush=True,
    )
    counts_dir = os.path.join(log_dir, "sqlcounts")
    await asyncio.sleep(2 * sqlcount.WRITE_EVERY)  # the servers' start-up counts written
    sql_before = total_counts(counts_dir, procs.server_pids())
    pg = PgWatch(db)
    pg_before = await asyncio.to_thread(pg.counters)
    await asyncio.to_thread(pg.sample_cpu)
    # CPU per process group: every process shares the same cores, so what the simulator
    # (standing in for Twilio) and this load client burn is taken from the server.
    cpu_before = procs.cpu_groups()
    wal = WalWatch(db.wal_path())
    watching = asyncio.create_task(wal.run())
    target_state = "waiting" if waiting else "done"
    started = time.time()
    sent = [0]
    stop_watch = asyncio.Event()
    progress = asyncio.create_task(watch(db, pg, target_state, sent, started, stop_watch))
    refused: dict[str, int] = {}
    failures = await load.submit(
        f"http://127.0.0.1:{api_port}",
        args.tasks,
        args.concurrency,
        args.rate,
        waiting,
        sent,
        refused,
    )
    submitted = time.time()
    end = started + args.timeout
    while time.time() < end:
        done = await asyncio.to_thread(reads.count_in_state, db, target_state, started)
        if done >= args.tasks - failures:
            break
        if procs.any_exited():
            print(f"a server process exited early; see the logs in {log_dir}", file=sys.stderr)
            return 1
        await asyncio.sleep(0.2)
    finished = time.time()
    watching.cancel()
    stop_watch.set()
    await progress
    await asyncio.to_thread(pg.sample_cpu)
    cpu_after = procs.cpu_groups()
    stats = await load.get_json(f"http://127.0.0.1:{sim_port}/_sim/stats")
    done = await asyncio.to_thread(reads.count_in_state, db, target_state, started)
    mems = [processes.peak_rss_mb(p.pid) for p in procs.engines]
    await asyncio.sleep(2 * sqlcount.WRITE_EVERY)
    sql = delta(total_counts(counts_dir, procs.server_pids()), sql_before)
    measured = report.Measured(
        tasks=args.tasks,
        failures=failures,
        state=target_state,
        done=done,
        submit_seconds=submitted - started,
        finish_seconds=finished - started,
        simulator=stats,
        finished=None if waiting else await asyncio.to_thread(reads.finished_since, db, started),
        cpu={group: cpu_after[group] - cpu_before[group] for group in cpu_after},
        workers=len(procs.workers),
        pg_cpu=pg.cpu(),
        pg_enabled=pg.enabled,
    )
    for line in report.results(measured) + sql_report(sql, measured.round_trips):
        print(line)
    if refused:
        print(f"refused by     {refused} (the server logs are kept)")
    if pg.enabled:
        # Idle backends report their statistics up to 10 s late.
        await asyncio.sleep(PG_STATS_DELAY)
        pg_after = await asyncio.to_thread(pg.counters)
        for line in PgWatch.report(delta(pg_after, pg_before), measured.round_trips):
            print(line)
    for line in report.memory_and_wal(mems, wal.path, wal.peak, wal.size()):
        print(line)
    # Refused submissions fail the run too: its logs are kept, to see why.
    return 0 if done >= args.tasks - failures and not failures else 1
