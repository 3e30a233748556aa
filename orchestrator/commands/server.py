"""``orchestrator serve|worker|purge|db|deploy|simulate-twilio|demo|bench``: running
the servers and looking after the database.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shlex
import signal
import sys
from typing import Any

from orchestrator import logs
from orchestrator.commands.header_deadline import header_deadline_protocol
from orchestrator.config import BOUND_URL_KEY, Settings, bound_public_url

from .common import runtime, settings_from

SHUTDOWN_GRACE_SECONDS = 5


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from orchestrator.http.app import create_app
    from orchestrator.store.db import upgrade as db_upgrade

    overrides: dict[str, Any] = {}
    if args.concurrency:
        overrides["engine_concurrency"] = args.concurrency
    if args.db_pool_size:
        overrides["db_pool_size"] = args.db_pool_size
    from orchestrator.engine.lock import EngineLockError
    from orchestrator.services.apikeys import ApiKeyError

    settings = settings_from(args, **overrides)
    if not settings.public_url_configured:
        # Callback URLs name this server as it listens, never a default port it lacks.
        settings = dataclasses.replace(settings, public_url=bound_public_url(args.host, args.port))
    db_upgrade(settings.database_url)
    if not settings.public_url_configured:
        _remember_bound_url(settings)
    try:
        if not args.no_engine:
            _check_engine_lock(app_db_path(settings.database_url))
        app = create_app(settings, run_engine=not args.no_engine)
    except (ApiKeyError, EngineLockError) as exc:
        # One line, not the traceback of a failed ASGI startup.
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logs.notice(
        f"orchestrator on http://{args.host}:{args.port} - callback URLs use {settings.public_url}"
        + ("" if settings.public_url_configured else " (set ORCH_PUBLIC_URL to change)")
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.access_log,
        # Logging is set up by the command (ORCH_LOG_FORMAT, the access log's redaction).
        log_config=None,
        server_header=False,  # no need to tell the internet what serves it
        # On SIGTERM, requests still running after this long are cut off, so the engine
        # stops (and gives its leases back) promptly even under load.
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
        # Slow clients: headers within header_timeout, then the body within body_timeout
        # (http/limits.py), an idle keep-alive connection closed after keep_alive_timeout.
        http=header_deadline_protocol(settings.header_timeout),
        timeout_keep_alive=settings.keep_alive_timeout,
    )
    return 0


def app_db_path(url: str) -> str | None:
    """The SQLite file behind ``url`` (None for other databases or in memory)."""
    from sqlalchemy.engine import make_url

    from orchestrator.store.db import normalize_url

    parsed = make_url(normalize_url(url))
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return parsed.database


def _check_engine_lock(path: str | None) -> None:
    """Refuse to start a second engine on a SQLite file before the server starts (the
    engine checks again when it starts: this only makes the refusal one clear line)."""
    from orchestrator.engine.lock import SqliteEngineLock

    if path is not None:
        lock = SqliteEngineLock(path)
        lock.acquire()
        lock.release()


def _remember_bound_url(settings: Settings) -> None:
    from orchestrator.store.db import Database
    from orchestrator.store.kv import set_setting

    db = Database(settings.database_url, pool_size=1)
    try:
        with db.write() as conn:
            set_setting(conn, BOUND_URL_KEY, settings.public_url)
    finally:
        db.dispose()


def cmd_worker(args: argparse.Namespace) -> int:
    from orchestrator.engine.lock import EngineLockError
    from orchestrator.engine.worker import Worker

    rt = runtime(args, db_pool_size=args.db_pool_size)
    worker = Worker(rt, concurrency=args.concurrency)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        runner = asyncio.create_task(worker.run())
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        done, _ = await asyncio.wait(
            {runner, asyncio.create_task(stop.wait())}, return_when=asyncio.FIRST_COMPLETED
        )
        if runner in done:
            runner.result()
            return
        await worker.stop()
        runner.cancel()
        await rt.aclose()

    try:
        asyncio.run(main())
    except EngineLockError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    import time

    from orchestrator.store.retention import purge_batch

    days = args.older_than_days
    if days is not None and days < 0:
        print("error: --older-than-days must be 0 or more", file=sys.stderr)
        return 2
    rt = runtime(args)
    if days is None:
        days = rt.settings.retention_days
        if days <= 0:
            # 0 means "keep everything", as for the engines' own purge: a cutoff of now
            # would delete every finished task.
            print(
                "retention is off (ORCH_RETENTION_DAYS=0): nothing purged; "
                "give --older-than-days N to purge by hand"
            )
            return 0
    cutoff = time.time() - days * 86400
    total = 0
    while True:
        with rt.db.write() as conn:
            n = purge_batch(conn, cutoff, 500)
        total += n
        if n < 500:
            break
    print(f"purged {total} finished task(s) older than {days:g} day(s)")
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from orchestrator.store.db import upgrade as db_upgrade

    db_upgrade(settings_from(args).database_url)
    print("database is at the latest schema")
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    from orchestrator.engine.definition import DefinitionError
    from orchestrator.services.deploy import deploy_files

    rt = runtime(args)
    try:
        results = deploy_files(rt, args.files)
    except DefinitionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for r in results:
        if r.created:
            print(f"{r.slug} (conv_id {r.conv_id}): deployed version {r.version}")
            for change in r.changes:
                print(f"    {change}")
            if r.details:
                print("  in detail:")
            for line in r.details:
                print(f"    {line}")
        else:
            print(f"{r.slug} (conv_id {r.conv_id}): unchanged, still version {r.version}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from orchestrator.twilio.simulator import SimulatorConfig, serve_simulator

    settings = Settings.from_env()
    config = SimulatorConfig(
        account_sid=args.account_sid or settings.twilio_account_sid or SimulatorConfig.account_sid,
        auth_token=args.auth_token or settings.twilio_auth_token or SimulatorConfig.auth_token,
        callback_delay=args.callback_delay,
        duplicate_callbacks=args.duplicate,
        reorder_callbacks=args.reorder,
        early_callbacks=args.early,
        rate_limit_429=args.burst_429,
        lose_callbacks=args.lose_callbacks,
    )
    url = f"http://{f'[{args.host}]' if ':' in args.host else args.host}:{args.port}"
    print(
        f"Twilio simulator on {url}\n"
        f"  account sid  {config.account_sid}\n"
        f"  auth token   {config.auth_token}\n"
        "Point `orchestrator serve` at it (in the shell that starts serve):\n"
        f"  export ORCH_TWILIO_API_URL={url}\n"
        f"  export TWILIO_ACCOUNT_SID={config.account_sid}\n"
        f"  export TWILIO_AUTH_TOKEN={shlex.quote(config.auth_token)}",
        flush=True,
    )
    try:
        asyncio.run(serve_simulator(config, args.host, args.port))
    except KeyboardInterrupt:
        pass
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from orchestrator.demo import run_demo

    return run_demo(settings_from(args), keep_running=args.keep_running)


def cmd_bench(args: argparse.Namespace) -> int:
    # Imported here: the bench is a tool, kept out of what serve and worker load.
    from orchestrator.bench.run import run_bench

    code: int = run_bench(args)
    return code
