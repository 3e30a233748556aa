"""``orchestrator`` command line (also ``python -m orchestrator``)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from sqlalchemy import exc
from sqlalchemy.engine import make_url

from orchestrator.commands.admin import cmd_apikey, cmd_secrets
from orchestrator.commands.inspection import cmd_process, cmd_task
from orchestrator.commands.optouts import add_parser as add_optout_parser
from orchestrator.commands.server import (
    cmd_bench,
    cmd_db_upgrade,
    cmd_demo,
    cmd_deploy,
    cmd_purge,
    cmd_serve,
    cmd_simulate,
    cmd_worker,
)
from orchestrator.config import ConfigError, Settings


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
    add_optout_parser(sub)

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
        "--separate-engine",
        action="store_true",
        help="run the engine as `worker` process(es) and the API as `serve --no-engine`",
    )
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
    try:
        result: int = args.func(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (exc.OperationalError, exc.ArgumentError) as e:
        # An unreachable or misspelt database is an operator's mistake: one line, not a
        # traceback, and never the URL's password.
        print(
            f"error: cannot use the database {_safe_url(args)}: {_first_line(e)}", file=sys.stderr
        )
        return 1
    return result


def _safe_url(args: argparse.Namespace) -> str:
    url = args.database_url or os.environ.get("ORCH_DATABASE_URL") or Settings.database_url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except exc.ArgumentError:
        return repr(url.split("@")[-1]) if "@" in url else repr(url)


def _first_line(e: Exception) -> str:
    cause = e.orig if isinstance(e, exc.DBAPIError) and e.orig is not None else e
    return str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__


if __name__ == "__main__":
    sys.exit(main())
