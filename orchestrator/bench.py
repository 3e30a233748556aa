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
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from sqlalchemy import func, select

from orchestrator.bench_stats import (
    PG_STATS_DELAY,
    PgWatch,
    cpu_seconds,
    delta,
    sql_report,
    total_counts,
)
from orchestrator.servers import free_port
from orchestrator.store import sqlcount
from orchestrator.store.db import Database, upgrade
from orchestrator.store.tables import processes, tasks

ACCOUNT = "AC" + "b" * 32
TOKEN = "bench-auth-token"
# Idle connections are dropped before the server's keep-alive timeout (5 s) closes them.
KEEPALIVE_TIMEOUT = 2.0


def _peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _cpu_groups(procs: list[subprocess.Popen[bytes]]) -> dict[str, float]:
    """CPU seconds so far: the simulator (``procs[0]``), the orchestrator's serve/worker
    processes (the rest: ``serve``, then any ``worker``), and this process (the load
    client, plus its progress polls)."""
    return {
        "server": sum(cpu_seconds(p.pid) for p in procs[1:]),
        "api": cpu_seconds(procs[1].pid),
        "engine": sum(cpu_seconds(p.pid) for p in procs[2:]),
        "simulator": cpu_seconds(procs[0].pid),
        "load client": time.process_time(),
    }


def _spawn(args: list[str], env: dict[str, str], log_dir: str) -> subprocess.Popen[bytes]:
    # Output goes to a file: an unread pipe fills up and then blocks the server.
    log = open(os.path.join(log_dir, f"{args[0]}-{time.monotonic_ns()}.log"), "wb")
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *args], env=env, stdout=log, stderr=log
    )


async def _wait_http(url: str, deadline: float) -> None:
    async with httpx.AsyncClient() as client:
        while time.time() < deadline:
            try:
                if (await client.get(url)).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


async def _submit(
    api: str, n: int, concurrency: int, rate: float, waiting: bool, sent: list[int]
) -> int:
    """Submits; ``sent[0]`` counts the answered submissions as they come (for progress)."""
    failures = 0
    run = time.strftime("%Y%m%dT%H%M%S")
    url = f"{api}/api/v1/processes/sending-sms/tasks"
    headers = {"Content-Type": "application/json"}
    # aiohttp, not httpx: this process shares the cores with the server it measures, and
    # httpx's pool bookkeeping cost more CPU per request than the rest of the client.
    # Its pool also bounds the requests in flight to ``concurrency``.
    connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=KEEPALIVE_TIMEOUT)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:

        async def one(i: int) -> None:
            nonlocal failures
            to = f"+1555{i % 10_000_000:07d}"
            if waiting:
                to = to[:-4] + "0000"  # the simulator never calls back: the task waits
            elif to.endswith(("0000", "3003", "3005", "3008")):
                to = to[:-1] + "1"
            body = {
                "ref": f"bench-{run}-{i}",  # a new task even in a database used before
                "data": {"Number_to": to, "Number_from": "+15005550006", "Body": f"bench {i}"},
            }
            content = json.dumps(body, separators=(",", ":"))
            # A dropped connection is retried: the same ref and data is an idempotent
            # create, so the POST is repeatable.
            for _attempt in range(3):
                try:
                    async with client.post(url, data=content, headers=headers) as r:
                        await r.read()
                except (aiohttp.ClientError, TimeoutError):
                    continue
                if r.status in (200, 201):
                    sent[0] += 1
                    return
                break
            failures += 1

        start = time.time()
        jobs = []
        for i in range(n):
            if rate > 0:
                delay = start + i / rate - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            jobs.append(asyncio.create_task(one(i)))
        await asyncio.gather(*jobs)
    return failures


def _progress(db: Database, state: str, since: float = 0.0) -> int:
    """Bench tasks in ``state`` created since ``since`` (earlier runs' tasks do not count)."""
    with db.read() as conn:
        pid = conn.execute(select(processes.c.id).where(processes.c.slug == "sending-sms"))
        process_id = pid.scalar_one()
        return int(
            conn.execute(
                select(func.count())
                .select_from(tasks)
                .where(
                    tasks.c.process_id == process_id,
                    tasks.c.state == state,
                    tasks.c.created_at >= since,
                )
            ).scalar_one()
        )


def _latencies(db: Database, since: float) -> tuple[list[float], float, float, dict[str, int]]:
    with db.read() as conn:
        process_id = conn.execute(
            select(processes.c.id).where(processes.c.slug == "sending-sms")
        ).scalar_one()
        rows = conn.execute(
            select(tasks.c.created_at, tasks.c.finished_at, tasks.c.outcome).where(
                tasks.c.process_id == process_id,
                tasks.c.finished_at.is_not(None),
                tasks.c.created_at >= since,
            )
        ).all()
    lat = [f - c for c, f, _o in rows]
    outcomes: dict[str, int] = {}
    for _c, _f, o in rows:
        outcomes[o] = outcomes.get(o, 0) + 1
    first = min(c for c, _f, _o in rows) if rows else 0.0
    last = max(f for _c, f, _o in rows) if rows else 0.0
    return lat, first, last, outcomes


class _WalWatch:
    """The largest size the SQLite WAL file reached while the bench ran."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.peak = 0

    def size(self) -> int:
        try:
            return os.path.getsize(self.path) if self.path else 0
        except OSError:
            return 0

    async def run(self) -> None:
        while self.path:
            self.peak = max(self.peak, self.size())
            await asyncio.sleep(0.05)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


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
    procs: list[subprocess.Popen[bytes]] = [
        _spawn(
            ["simulate-twilio", "--port", str(sim_port), "--callback-delay", "0.01"], env, workdir
        )
    ]
    serve = ["serve", "--port", str(api_port), "--log-level", "warning"]
    # The engine in processes of its own (several need PostgreSQL); serve is then the API.
    separate = args.engine_processes > 1 or bool(getattr(args, "separate_engine", False))
    if separate:
        serve.append("--no-engine")
    procs.append(_spawn(serve, env, workdir))
    engines = [procs[-1]]
    if separate:
        engines = [_spawn(["worker"], env, workdir) for _ in range(args.engine_processes)]
        procs += engines
    status = 1
    try:
        status = asyncio.run(_run(args, db, procs, engines, sim_port, api_port, workdir))
        return status
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        db.dispose()
        if status == 0:  # the database and the logs are only worth keeping after a failure
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"logs and database kept in {workdir}", file=sys.stderr)


async def _watch(
    db: Database, pg: PgWatch, state: str, sent: list[int], started: float, stop: asyncio.Event
) -> None:
    """A progress line every 3 s; PostgreSQL's backends' CPU sampled every second (a
    backend that exits between samples takes its last second with it)."""
    tick, last_done, last_time = 0, 0, started
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except TimeoutError:
            pass
        await asyncio.to_thread(pg.sample_cpu)
        tick += 1
        if tick % 3 or stop.is_set():
            continue
        done = await asyncio.to_thread(_progress, db, state, started)
        now = time.time()
        print(
            f"progress       {now - started:5.1f}s: {sent[0]} submitted, {done} {state} "
            f"({(done - last_done) / max(now - last_time, 1e-9):.0f}/s lately)",
            flush=True,
        )
        last_done, last_time = done, now


def _server_counts(directory: str, procs: list[subprocess.Popen[bytes]]) -> dict[str, int]:
    pids = {str(p.pid) for p in procs[1:]}  # not the simulator's
    return total_counts(directory, pids)


async def _run(
    args: argparse.Namespace,
    db: Database,
    procs: list[subprocess.Popen[bytes]],
    engines: list[subprocess.Popen[bytes]],
    sim_port: int,
    api_port: int,
    log_dir: str,
) -> int:
    deadline = time.time() + 30
    await _wait_http(f"http://127.0.0.1:{sim_port}/_sim/stats", deadline)
    await _wait_http(f"http://127.0.0.1:{api_port}/healthz", deadline)
    waiting = bool(getattr(args, "waiting", False))
    print(
        f"bench: {args.tasks} SMS round trips, {args.engine_processes} engine process(es), "
        f"database {db.engine.url.get_backend_name()}"
        + (" (tasks left waiting)" if waiting else ""),
        flush=True,
    )
    counts_dir = os.path.join(log_dir, "sqlcounts")
    await asyncio.sleep(2 * sqlcount.WRITE_EVERY)  # the servers' start-up counts written
    sql_before = _server_counts(counts_dir, procs)
    pg = PgWatch(db)
    pg_before = await asyncio.to_thread(pg.counters)
    await asyncio.to_thread(pg.sample_cpu)
    # CPU per process group: every process shares the same cores, so what the simulator
    # (standing in for Twilio) and this load client burn is taken from the server.
    cpu_before = _cpu_groups(procs)
    wal = _WalWatch(db.wal_path())
    watching = asyncio.create_task(wal.run())
    target_state = "waiting" if waiting else "done"
    started = time.time()
    sent = [0]
    stop_watch = asyncio.Event()
    progress = asyncio.create_task(_watch(db, pg, target_state, sent, started, stop_watch))
    failures = await _submit(
        f"http://127.0.0.1:{api_port}", args.tasks, args.concurrency, args.rate, waiting, sent
    )
    submitted = time.time()
    end = started + args.timeout
    while time.time() < end:
        done = await asyncio.to_thread(_progress, db, target_state, started)
        if done >= args.tasks - failures:
            break
        if any(p.poll() is not None for p in procs):
            print(f"a server process exited early; see the logs in {log_dir}", file=sys.stderr)
            return 1
        await asyncio.sleep(0.2)
    finished = time.time()
    watching.cancel()
    stop_watch.set()
    await progress
    await asyncio.to_thread(pg.sample_cpu)
    cpu_after = _cpu_groups(procs)
    async with httpx.AsyncClient() as client:
        stats: dict[str, Any] = (await client.get(f"http://127.0.0.1:{sim_port}/_sim/stats")).json()
    done = await asyncio.to_thread(_progress, db, target_state, started)
    mems = [_peak_rss_mb(p.pid) for p in engines]
    cpu = {group: cpu_after[group] - cpu_before[group] for group in cpu_after}
    await asyncio.sleep(2 * sqlcount.WRITE_EVERY)
    sql = delta(_server_counts(counts_dir, procs), sql_before)
    print(
        f"submitted      {args.tasks - failures} ok, {failures} refused, "
        f"in {submitted - started:.2f}s"
    )
    print(f"{target_state:<14} {done} of {args.tasks} after {finished - started:.2f}s")
    print(
        f"messages       {stats.get('messages_created')} created in the simulator "
        f"({stats.get('requests')} API requests, {stats.get('callbacks_sent')} callbacks sent)"
    )
    round_trips = done
    if not waiting:
        lat, first, last, outcomes = await asyncio.to_thread(_latencies, db, started)
        round_trips = len(lat)
        span = max(last - first, 1e-9)
        print(f"throughput     {len(lat) / span:.1f} round trips/s")
        print(
            f"latency        p50 {_pct(lat, 0.50) * 1000:.0f} ms, p99 "
            f"{_pct(lat, 0.99) * 1000:.0f} ms, mean {statistics.fmean(lat) * 1000:.0f} ms"
            if lat
            else "latency        n/a"
        )
        print(f"outcomes       {outcomes}")
    per_rt = {group: secs / max(round_trips, 1) * 1000 for group, secs in cpu.items()}
    print(
        f"server cpu     {per_rt['server']:.1f} ms per round trip "
        "(orchestrator processes, all cores)"
    )
    print(
        f"cpu per rt     server {per_rt['server']:.1f} ms, "
        f"simulator {per_rt['simulator']:.1f} ms, load client {per_rt['load client']:.1f} ms"
    )
    if len(procs) > 2:  # serve --no-engine and worker processes
        print(
            f"server split   api (serve --no-engine) {per_rt['api']:.1f} ms, "
            f"engine (worker x{len(procs) - 2}) {per_rt['engine']:.1f} ms per round trip"
        )
    pg_cpu = pg.cpu()
    if pg.enabled:
        print(
            f"postgres cpu   {pg_cpu[0] / max(round_trips, 1) * 1000:.1f} ms per round trip "
            f"(this database's backends), {pg_cpu[1] / max(round_trips, 1) * 1000:.1f} ms "
            "(WAL writer, checkpointer...: shared with any other database)"
            if pg_cpu
            else "postgres cpu   n/a (its processes are not readable here)"
        )
    for line in sql_report(sql, round_trips):
        print(line)
    if pg.enabled:
        # Idle backends report their statistics up to 10 s late.
        await asyncio.sleep(PG_STATS_DELAY)
        pg_after = await asyncio.to_thread(pg.counters)
        for line in PgWatch.report(delta(pg_after, pg_before), round_trips):
            print(line)
    print("peak memory    " + ", ".join(f"{m:.0f} MB" for m in mems) + " (engine/serve)")
    if wal.path:
        limit = int(os.environ.get("ORCH_SQLITE_WAL_LIMIT") or 32 * 2**20)
        print(
            f"sqlite wal     peak {wal.peak / 2**20:.1f} MB, at the end "
            f"{wal.size() / 2**20:.1f} MB (ORCH_SQLITE_WAL_LIMIT {limit / 2**20:.0f} MB; "
            "sampled every 50 ms)"
        )
    return 0 if done >= args.tasks - failures else 1
