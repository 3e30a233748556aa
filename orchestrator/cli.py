"""The orchestrator command line (also: python -m orchestrator)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from sqlalchemy import exc
from sqlalchemy.engine import make_url

from orchestrator import logs
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


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the help already names one (or
    there is none: a flag that is off, or a value taken from the environment)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (
            action.default not in (None, False, argparse.SUPPRESS)
            and "default" not in text
            and (action.option_strings or action.nargs in ("?", "*"))
        ):
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="orchestrator", description=__doc__)
    p.add_argument(
        "--database-url",
        help="database URL (default: ORCH_DATABASE_URL, else sqlite:///./orchestrator.db)",
    )
    p.add_argument(
        "-v", "--verbose", action="store_true", help="log at INFO level (or set ORCH_LOG_LEVEL)"
    )
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    s = sub.add_parser("serve", help="API + webhooks + engine (applies migrations first)")
    s.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on; 0.0.0.0 or :: needs ORCH_PUBLIC_URL",
    )
    s.add_argument(
        "--port",
        type=int,
        default=8000,
        help="port to listen on; without ORCH_PUBLIC_URL, callback URLs use host and port",
    )
    s.add_argument("--no-engine", action="store_true", help="API and webhooks only")
    s.add_argument(
        "--concurrency",
        type=int,
        help="tasks the engine runs at once (default: ORCH_ENGINE_CONCURRENCY, else 256)",
    )
    s.add_argument(
        "--db-pool-size",
        type=int,
        help="database connections (and threads) (default: ORCH_DB_POOL_SIZE, else 10)",
    )
    s.add_argument(
        "--log-level",
        default="info",
        choices=("critical", "error", "warning", "info", "debug", "trace"),
        help="uvicorn's own log level",
    )
    s.add_argument(
        "--access-log",
        action="store_true",
        help="log every request (callback hashes and signatures redacted)",
    )
    s.set_defaults(func=cmd_serve)

    w = sub.add_parser("worker", help="the engine alone")
    w.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="tasks run at once (default: ORCH_ENGINE_CONCURRENCY, else 256)",
    )
    w.add_argument(
        "--db-pool-size",
        type=int,
        help="database connections (and threads) (default: ORCH_DB_POOL_SIZE, else 10)",
    )
    w.set_defaults(func=cmd_worker)

    pu = sub.add_parser("purge", help="delete finished tasks older than the retention period")
    pu.add_argument(
        "--older-than-days",
        type=float,
        help="age in days (default: ORCH_RETENTION_DAYS, else 30)",
    )
    pu.set_defaults(func=cmd_purge)

    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_cmd", required=True, metavar="COMMAND")
    db_sub.add_parser("upgrade", help="apply all migrations").set_defaults(func=cmd_db_upgrade)

    d = sub.add_parser("deploy", help="deploy process files as new versions")
    d.add_argument("files", nargs="+", help="process files (.yaml, .yml or .json)")
    d.set_defaults(func=cmd_deploy)

    t = sub.add_parser("task", help="create and inspect tasks")
    t_sub = t.add_subparsers(dest="task_cmd", required=True, metavar="COMMAND")
    tc = t_sub.add_parser("create", help="start a task")
    tc.add_argument("process", help="the process's slug or conv_id")
    tc.add_argument("--ref", help="your reference for the task (unique while it runs)")
    tc.add_argument("--data", default="{}", help="task data as a JSON object")
    for name, what in (("show", "a task's node, state and data"), ("history", "its events")):
        t_sub.add_parser(name, help=what).add_argument("task_id", help="the task's id")
    tl = t_sub.add_parser("list", help="a process's tasks, newest first")
    tl.add_argument("process", help="the process's slug or conv_id")
    tl.add_argument("--ref", help="only tasks with this ref")
    tl.add_argument("--node", help="only tasks in this node (its id)")
    tl.add_argument("--state", choices=("active", "waiting", "done"), help="only this state")
    tl.add_argument("--outcome", choices=("success", "escalation"), help="only this outcome")
    tl.add_argument("--limit", type=int, default=50, help="at most this many")
    for name, about in (
        ("retry", "run a task again from a node (default: the one that led to its end)"),
        ("cancel", "end an unfinished task in escalation with code CANCELLED"),
        ("move", "put an unfinished task in another node"),
    ):
        tr = t_sub.add_parser(name, help=about)
        tr.add_argument("task_id", nargs="?", help="the task (or --process and --in-node)")
        tr.add_argument("--node", required=name == "move", help="target node id")
        if name == "cancel":
            tr.add_argument("--reason", help="why, kept in the history")
        tr.add_argument("--process", help="with --in-node: every task of that node")
        tr.add_argument("--in-node", help="the node whose tasks to repair (bulk)")
        tr.add_argument("--limit", type=int, default=1000, help="bulk: at most this many")
    t.set_defaults(func=cmd_task)

    pr = sub.add_parser("process", help="list and show processes")
    pr_sub = pr.add_subparsers(dest="process_cmd", required=True, metavar="COMMAND")
    pr_sub.add_parser("list", help="processes with their task counts")
    pr_sub.add_parser("show", help="nodes, counters and callback URLs").add_argument(
        "process", help="the process's slug or conv_id"
    )
    ex = pr_sub.add_parser("export", help="write the deployed definition (YAML, or JSON)")
    ex.add_argument("process", help="the process's slug or conv_id")
    ex.add_argument("-o", "--output", help="file to write (.json: JSON) (default: stdout)")
    ex.add_argument("--version", type=int, help="a kept version (default: the current one)")
    gr = pr_sub.add_parser("graph", help="the process as a Mermaid (or DOT) graph")
    gr.add_argument("process", help="the process's slug or conv_id")
    gr.add_argument("--format", choices=("mermaid", "dot"), default="mermaid", help="notation")
    gr.add_argument("--version", type=int, help="a kept version (default: the current one)")
    pr_sub.add_parser("versions", help="every deployed version").add_argument(
        "process", help="the process's slug or conv_id"
    )
    pr.set_defaults(func=cmd_process)

    ak = sub.add_parser("apikey", help="API keys for /api/v1 and the Corezoid API")
    ak_sub = ak.add_subparsers(dest="apikey_cmd", required=True, metavar="COMMAND")
    akc = ak_sub.add_parser("create", help="a new key; its secret is printed once")
    akc.add_argument("--login", help="the key's login id (default: generated)")
    akc.add_argument(
        "--role",
        choices=("read", "operate"),
        default="operate",
        help="read: GET only; operate: also submit, modify, repair, deploy",
    )
    ak_sub.add_parser("list", help="keys (never their secrets)")
    ak_sub.add_parser("revoke", help="refuse this key from now on").add_argument(
        "login", help="the key's login id"
    )
    ak.set_defaults(func=cmd_apikey)
    add_optout_parser(sub)

    sec = sub.add_parser("secrets", help="stored secrets (see docs/security.md)")
    sec_sub = sec.add_subparsers(dest="secrets_cmd", required=True, metavar="COMMAND")
    sec_sub.add_parser(
        "rotate",
        help="re-encrypt stored tokens under ORCH_SECRET (old ones from ORCH_PREVIOUS_SECRETS)",
    )
    sec.set_defaults(func=cmd_secrets)

    sim = sub.add_parser("simulate-twilio", help="a Twilio-compatible server on loopback")
    sim.add_argument("--host", default="127.0.0.1", help="address to listen on")
    sim.add_argument("--port", type=int, default=8010, help="port to listen on")
    sim.add_argument(
        "--account-sid",
        help="the account it accepts (default: TWILIO_ACCOUNT_SID, else AC000…000)",
    )
    sim.add_argument(
        "--auth-token",
        help="the account's token (default: TWILIO_AUTH_TOKEN, else simulator-auth-token)",
    )
    sim.add_argument(
        "--callback-delay", type=float, default=0.05, help="seconds between status callbacks"
    )
    sim.add_argument("--duplicate", action="store_true", help="send every callback twice")
    sim.add_argument("--reorder", action="store_true", help="terminal callback before sent")
    sim.add_argument("--early", action="store_true", help="first callback before the answer")
    sim.add_argument("--burst-429", type=int, default=0, help="answer the next N creates 429")
    sim.add_argument("--lose-callbacks", action="store_true", help="send no status callback at all")
    sim.set_defaults(func=cmd_simulate)

    demo = sub.add_parser("demo", help="orchestrator + simulator: a few SMS end to end")
    demo.add_argument(
        "--keep-running",
        action="store_true",
        help="leave both servers up afterwards (Ctrl-C to stop)",
    )
    demo.set_defaults(func=cmd_demo)

    b = sub.add_parser("bench", help="round trips per second against the simulator")
    b.add_argument("-n", "--tasks", type=int, default=2000, help="SMS to send")
    b.add_argument("--concurrency", type=int, default=64, help="submissions in flight")
    b.add_argument("--rate", type=float, default=0.0, help="submissions per second (0: max)")
    b.add_argument("--engine-processes", type=int, default=1, help="engine processes to run")
    b.add_argument("--timeout", type=float, default=300.0, help="seconds before giving up")
    b.add_argument(
        "--db",
        metavar="URL",
        help="database to bench, e.g. postgresql+psycopg://user@host/db (default: "
        "--database-url, ORCH_BENCH_DATABASE_URL, else a temporary SQLite file)",
    )
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
    _use_formatter(p)
    return p


def _use_formatter(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _use_formatter(child)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        logs.configure(verbose=args.verbose)
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
