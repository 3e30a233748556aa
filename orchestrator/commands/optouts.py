"""``orchestrator optout list``: recipients who opted out of a sender (SPEC §10)."""

from __future__ import annotations

import argparse

from .common import print_json, runtime, table


def cmd_optout(args: argparse.Namespace) -> int:
    from orchestrator.engine.opt_outs import list_view

    rows = list_view(runtime(args), recipient=args.recipient, sender=args.sender, limit=args.limit)
    if args.json:
        print_json({"opt_outs": rows})
        return 0
    if not rows:
        print("no opt-outs")
        return 0
    table(
        ("recipient", "sender", "source", "since"),
        [(r["recipient"], r["sender"], r["source"], r["created_at"]) for r in rows],
    )
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    oo = sub.add_parser("optout", help="recipients who texted STOP (sends to them escalate)")
    oo_sub = oo.add_subparsers(dest="optout_cmd", required=True, metavar="COMMAND")
    ls = oo_sub.add_parser("list", help="opt-outs, newest first")
    ls.add_argument("--recipient", help="only this recipient (E.164)")
    ls.add_argument("--sender", help="only this sender (our number)")
    ls.add_argument(
        "--limit",
        type=int,
        default=100,
        choices=range(1, 501),
        metavar="1-500",
        help="at most this many",
    )
    ls.add_argument("--json", action="store_true", help="print JSON")
    oo.set_defaults(func=cmd_optout)
