"""What the ``orchestrator`` commands share: settings, the runtime, printing."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from orchestrator.config import Settings


def settings_from(args: argparse.Namespace, **overrides: Any) -> Settings:
    if getattr(args, "database_url", None):
        overrides["database_url"] = args.database_url
    return Settings.from_env(**overrides)


def runtime(args: argparse.Namespace, *, upgrade: bool = True, **overrides: Any) -> Any:
    from orchestrator.engine.runtime import Runtime
    from orchestrator.services.deploy import ensure_shipped
    from orchestrator.store.db import upgrade as db_upgrade

    settings = settings_from(args, **{k: v for k, v in overrides.items() if v})
    if upgrade:
        db_upgrade(settings.database_url)
    rt = Runtime(settings)
    adopt_server_url(rt)
    ensure_shipped(rt)
    return rt


def adopt_server_url(rt: Any) -> None:
    """Without ORCH_PUBLIC_URL, use the callback base the last ``serve`` bound (it keeps it
    in the database), so a worker's StatusCallbacks and ``process show`` match the server."""
    import dataclasses

    from orchestrator.config import BOUND_URL_KEY
    from orchestrator.store.kv import get_setting

    if rt.settings.public_url_configured:
        return
    with rt.db.read() as conn:
        stored = get_setting(conn, BOUND_URL_KEY)
    if stored:
        rt.settings = dataclasses.replace(rt.settings, public_url=stored)


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for i, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
