"""``orchestrator`` command line (also ``python -m orchestrator``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

from orchestrator.config import Settings


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    if getattr(args, "database_url", None):
        overrides["database_url"] = args.database_url
    return Settings.from_env(**overrides)


def _runtime(args: argparse.Namespace, *, upgrade: bool = True, **overrides: Any) -> Any:
    from orchestrator.engine.deploy import ensure_shipped
    from orchestrator.engine.runtime import Runtime
    from orchestrator.store.db import upgrade as db_upgrade

    settings = _settings(args, **{k: v for k, v in overrides.items() if v})
    if upgrade:
        db_upgrade(settings.database_url)
    rt = Runtime(settings)
    ensure_shipped(rt)
    return rt


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from orchestrator.http.app import create_app
    from orchestrator.store.db import upgrade as db_upgrade

    overrides: dict[str, Any] = {}
    if args.concurrency:
        overrides["engine_concurrency"] = args.concurrency
    if args.db_pool_size:
        overrides["db_pool_size"] = args.db_pool_size
    from orchestrator.engine.apikeys import ApiKeyError

    settings = _settings(args, **overrides)
    db_upgrade(settings.database_url)
    try:
        app = create_app(settings, run_engine=not args.no_engine)
    except ApiKeyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.access_log,
        server_header=False,  # no need to tell the internet what serves it
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from orchestrator.engine.worker import EngineLockError, Worker

    rt = _runtime(args, db_pool_size=args.db_pool_size)
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

    rt = _runtime(args)
    days = args.older_than_days
    if days is None:
        days = rt.settings.retention_days
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

    db_upgrade(_settings(args).database_url)
    print("database is at the latest schema")
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    from orchestrator.engine.definition import DefinitionError
    from orchestrator.engine.deploy import deploy_files

    rt = _runtime(args)
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


def cmd_task(args: argparse.Namespace) -> int:
    from orchestrator.engine.service import ApiError, Service

    service = Service(_runtime(args))
    try:
        if args.task_cmd == "create":
            data = json.loads(args.data)
            view, created = service.create_task(args.process, args.ref, data, source="cli")
            _print_json(view)
        elif args.task_cmd == "show":
            _print_json(service.get_task(args.task_id))
        elif args.task_cmd == "history":
            for e in service.history(args.task_id):
                detail = json.dumps(e["detail"], ensure_ascii=False) if e["detail"] else ""
                arrow = (
                    f"{e['node_id'] or ''} -> {e['to_node_id']}"
                    if e["to_node_id"]
                    else (e["node_id"] or "")
                )
                print(f"{e['at']}  {e['kind']:<16} {arrow:<40} {detail}")
        elif args.task_cmd == "list":
            page = service.list_tasks(
                args.process,
                ref=args.ref,
                node=args.node,
                state=args.state,
                outcome=args.outcome,
                limit=args.limit,
            )
            rows = [
                (
                    t["task_id"],
                    t["ref"] or "",
                    t["node"]["id"],
                    t["state"],
                    t["outcome"] or "",
                    t["created_at"],
                )
                for t in page["tasks"]
            ]
            _table(("task_id", "ref", "node", "state", "outcome", "created_at"), rows)
    except ApiError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    except json.JSONDecodeError as exc:
        print(f"error: --data is not valid JSON: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_process(args: argparse.Namespace) -> int:
    from orchestrator.engine.service import ApiError, Service

    if args.process_cmd in ("export", "graph", "versions"):
        return _process_files(args)

    service = Service(_runtime(args))
    try:
        if args.process_cmd == "list":
            rows = [
                (
                    p["conv_id"],
                    p["slug"],
                    p["title"],
                    p["version"],
                    p["counts"]["active"],
                    p["counts"]["waiting"],
                    p["counts"]["success"],
                    p["counts"]["escalation"],
                )
                for p in service.list_processes()
            ]
            _table(
                (
                    "conv_id",
                    "slug",
                    "title",
                    "version",
                    "active",
                    "waiting",
                    "success",
                    "escalation",
                ),
                rows,
            )
        else:
            view = service.process_view(args.process)
            print(
                f"{view['title']} ({view['slug']}, conv_id {view['conv_id']}, "
                f"version {view['version']})"
            )
            _table(
                ("node", "kind", "tasks", "title"),
                [(n["id"], n["kind"], n["count"], n["title"]) for n in view["nodes"]],
            )
            for n in view["nodes"]:
                for form, url in n.get("callback_urls", {}).items():
                    print(f"  {n['id']} callback ({form}): {url}")
    except ApiError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    return 0


def _process_files(args: argparse.Namespace) -> int:
    """``process export|graph|versions``: the deployed definitions themselves."""
    from orchestrator.engine import graph
    from orchestrator.engine.authoring import NotDeployed, deployed_definition, versions

    rt = _runtime(args)
    try:
        if args.process_cmd == "versions":
            _table(
                ("version", "deployed", "source", "checksum"),
                [
                    (v["version"], v["deployed"], v["source"] or "-", v["checksum"][:12])
                    for v in versions(rt, args.process)
                ],
            )
            return 0
        raw, definition = deployed_definition(rt, args.process, args.version)
    except NotDeployed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.process_cmd == "graph":
        print(graph.dot(definition) if args.format == "dot" else graph.mermaid(definition), end="")
        return 0
    import yaml

    as_json = args.output and args.output.endswith(".json")
    text = (
        json.dumps(raw, indent=2, ensure_ascii=False) + "\n"
        if as_json
        else yaml.safe_dump(raw, sort_keys=False, allow_unicode=True, width=100)
    )
    if args.output and args.output != "-":
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        print(text, end="")
    return 0


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for i, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def cmd_apikey(args: argparse.Namespace) -> int:
    import datetime as dt

    from orchestrator.engine import apikeys

    rt = _runtime(args)
    try:
        if args.apikey_cmd == "create":
            login, secret = apikeys.create_key(rt, args.login)
            print(f"login:  {login}")
            print(f"secret: {secret}")
            print(
                "The secret is shown only now (the server keeps a hash). Send it as "
                "'Authorization: Bearer <secret>' to /api/v1; Corezoid clients sign with "
                "login and secret.",
                file=sys.stderr,
            )
        elif args.apikey_cmd == "list":

            def when(ts: float | None) -> str:
                return (
                    dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")
                    if ts
                    else ""
                )

            rows = [
                (
                    k.login,
                    k.source,
                    "active" if k.active else "revoked",
                    when(k.created_at),
                    when(k.revoked_at),
                )
                for k in apikeys.list_keys(rt)
            ]
            _table(("login", "source", "status", "created_at", "revoked_at"), rows)
        else:
            apikeys.revoke_key(rt, args.login)
            print(f"revoked {args.login}")
    except apikeys.ApiKeyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_secrets(args: argparse.Namespace) -> int:
    from orchestrator.engine.rotation import rotate

    report = rotate(_runtime(args))
    done = ", ".join(f"{n} in {table}" for table, n in sorted(report.reencrypted.items()))
    print(f"re-encrypted under the current ORCH_SECRET: {done or 'nothing'}")
    print(f"already current: {report.current}")
    if report.changed_meanwhile:
        print(f"changed during the run (run again): {report.changed_meanwhile}")
    if report.unreadable:
        print(
            f"error: {len(report.unreadable)} value(s) open with no configured secret "
            "(add the old one to ORCH_PREVIOUS_SECRETS): " + ", ".join(report.unreadable[:20]),
            file=sys.stderr,
        )
        return 1
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
    print(f"Twilio simulator on http://{args.host}:{args.port} (account {config.account_sid})")
    try:
        asyncio.run(serve_simulator(config, args.host, args.port))
    except KeyboardInterrupt:
        pass
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from orchestrator.demo import run_demo

    return run_demo(_settings(args), keep_running=args.keep_running)


def cmd_bench(args: argparse.Namespace) -> int:
    from orchestrator.bench import run_bench

    code: int = run_bench(args)
    return code


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="orchestrator", description=__doc__)
    p.add_argument("--database-url", help="overrides ORCH_DATABASE_URL")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("serve", help="API + webhooks + engine (applies migrations first)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--no-engine", action="store_true", help="API and webhooks only")
    s.add_argument("--concurrency", type=int, help="tasks the engine runs at once")
    s.add_argument("--db-pool-size", type=int, help="database connections (and threads)")
    s.add_argument("--log-level", default="info")
    s.add_argument("--access-log", action="store_true")
    s.set_defaults(func=cmd_serve)

    w = sub.add_parser("worker", help="the engine alone")
    w.add_argument("--concurrency", type=int, default=None, help="tasks run at once")
    w.add_argument("--db-pool-size", type=int, help="database connections (and threads)")

    pu = sub.add_parser("purge", help="delete finished tasks older than the retention period")
    pu.add_argument("--older-than-days", type=float, help="default: ORCH_RETENTION_DAYS")
    pu.set_defaults(func=cmd_purge)
    w.set_defaults(func=cmd_worker)

    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_cmd", required=True)
    db_sub.add_parser("upgrade", help="apply all migrations").set_defaults(func=cmd_db_upgrade)

    d = sub.add_parser("deploy", help="deploy process files as new versions")
    d.add_argument("files", nargs="+")
    d.set_defaults(func=cmd_deploy)

    t = sub.add_parser("task", help="create and inspect tasks")
    t_sub = t.add_subparsers(dest="task_cmd", required=True)
    tc = t_sub.add_parser("create")
    tc.add_argument("process")
    tc.add_argument("--ref")
    tc.add_argument("--data", default="{}", help="task data as a JSON object")
    for name in ("show", "history"):
        t_sub.add_parser(name).add_argument("task_id")
    tl = t_sub.add_parser("list")
    tl.add_argument("process")
    for opt in ("--ref", "--node", "--state", "--outcome"):
        tl.add_argument(opt)
    tl.add_argument("--limit", type=int, default=50)
    t.set_defaults(func=cmd_task)

    pr = sub.add_parser("process", help="list and show processes")
    pr_sub = pr.add_subparsers(dest="process_cmd", required=True)
    pr_sub.add_parser("list")
    pr_sub.add_parser("show").add_argument("process")
    ex = pr_sub.add_parser("export", help="write the deployed definition (YAML, or JSON)")
    ex.add_argument("process")
    ex.add_argument("-o", "--output", help="file to write (.json: JSON); default stdout")
    ex.add_argument("--version", type=int, help="a kept version (default: the current one)")
    gr = pr_sub.add_parser("graph", help="the process as a Mermaid (or DOT) graph")
    gr.add_argument("process")
    gr.add_argument("--format", choices=("mermaid", "dot"), default="mermaid")
    gr.add_argument("--version", type=int, help="a kept version (default: the current one)")
    pr_sub.add_parser("versions", help="every deployed version").add_argument("process")
    pr.set_defaults(func=cmd_process)

    ak = sub.add_parser("apikey", help="API keys for /api/v1 and the Corezoid API")
    ak_sub = ak.add_subparsers(dest="apikey_cmd", required=True)
    ak_sub.add_parser("create", help="a new key; its secret is printed once").add_argument(
        "--login", help="the key's login id (default: generated)"
    )
    ak_sub.add_parser("list", help="keys (never their secrets)")
    ak_sub.add_parser("revoke", help="refuse this key from now on").add_argument("login")
    ak.set_defaults(func=cmd_apikey)

    sec = sub.add_parser("secrets", help="stored secrets (see docs/security.md)")
    sec_sub = sec.add_subparsers(dest="secrets_cmd", required=True)
    sec_sub.add_parser(
        "rotate",
        help="re-encrypt stored tokens under ORCH_SECRET (old ones from ORCH_PREVIOUS_SECRETS)",
    )
    sec.set_defaults(func=cmd_secrets)

    sim = sub.add_parser("simulate-twilio", help="a Twilio-compatible server on loopback")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8010)
    sim.add_argument("--account-sid")
    sim.add_argument("--auth-token")
    sim.add_argument("--callback-delay", type=float, default=0.05)
    sim.add_argument("--duplicate", action="store_true", help="send every callback twice")
    sim.add_argument("--reorder", action="store_true", help="terminal callback before sent")
    sim.add_argument("--early", action="store_true", help="first callback before the answer")
    sim.add_argument("--burst-429", type=int, default=0, help="answer the next N creates 429")
    sim.add_argument("--lose-callbacks", action="store_true")
    sim.set_defaults(func=cmd_simulate)

    demo = sub.add_parser("demo", help="orchestrator + simulator: a few SMS end to end")
    demo.add_argument(
        "--keep-running",
        action="store_true",
        help="leave both servers up afterwards (Ctrl-C to stop)",
    )
    demo.set_defaults(func=cmd_demo)

    b = sub.add_parser("bench", help="round trips per second against the simulator")
    b.add_argument("-n", "--tasks", type=int, default=2000)
    b.add_argument("--concurrency", type=int, default=64, help="submissions in flight")
    b.add_argument("--rate", type=float, default=0.0, help="submissions per second (0: max)")
    b.add_argument("--engine-processes", type=int, default=1)
    b.add_argument("--timeout", type=float, default=300.0)
    b.add_argument(
        "--waiting",
        action="store_true",
        help="lose every callback: measure memory with N tasks left waiting",
    )
    b.set_defaults(func=cmd_bench)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
