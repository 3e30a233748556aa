"""``orchestrator apikey|secrets``: API keys and the rotation of stored secrets."""

from __future__ import annotations

import argparse
import sys

from .common import runtime, table


def cmd_apikey(args: argparse.Namespace) -> int:
    import datetime as dt

    from orchestrator.services import apikeys

    rt = runtime(args)
    try:
        if args.apikey_cmd == "create":
            login, secret = apikeys.create_key(rt, args.login, args.role)
            print(f"login:  {login}")
            print(f"role:   {args.role}")
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
                    k.role,
                    "active" if k.active else "revoked",
                    when(k.created_at),
                    when(k.revoked_at),
                )
                for k in apikeys.list_keys(rt)
            ]
            table(("login", "source", "role", "status", "created_at", "revoked_at"), rows)
        else:
            apikeys.revoke_key(rt, args.login)
            print(f"revoked {args.login}")
            if not apikeys.any_active_key(rt):
                print(
                    "warning: no active API key is left: /api/v1 now refuses every request "
                    "until you create one (`orchestrator apikey create`)",
                    file=sys.stderr,
                )
    except apikeys.ApiKeyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_secrets(args: argparse.Namespace) -> int:
    from orchestrator.services.rotation import rotate

    rt = runtime(args)
    report = rotate(rt.db, rt.vault)
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
