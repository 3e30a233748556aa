"""Reading deployed definitions back: any kept version, as its raw file content."""

from __future__ import annotations

import datetime as dt
from typing import Any

from orchestrator.engine.definition import ProcessDefinition, parse_definition
from orchestrator.store import processes as process_store
from orchestrator.store.db import Database


class NotDeployed(LookupError):
    pass


def deployed_definition(
    db: Database, key: str, version: int | None = None
) -> tuple[dict[str, Any], ProcessDefinition]:
    """The raw definition (as deployed) and its parsed form; the current version unless
    ``version`` names a kept one."""
    with db.read() as conn:
        record = process_store.get_process(conn, key)
        if record is None:
            raise NotDeployed(f"no process {key!r}")
        if version is None or version == record.current_version:
            raw = record.definition
        else:
            found = [
                v for v in process_store.list_versions(conn, record.id) if v["version"] == version
            ]
            if not found:
                raise NotDeployed(f"{record.slug} has no version {version}")
            stored = process_store.get_version(conn, found[0]["id"])
            assert stored is not None
            raw = stored[2]
    return raw, parse_definition(raw)


def versions(db: Database, key: str) -> list[dict[str, Any]]:
    with db.read() as conn:
        record = process_store.get_process(conn, key)
        if record is None:
            raise NotDeployed(f"no process {key!r}")
        rows = process_store.list_versions(conn, record.id)
    return [
        {
            **row,
            "deployed": dt.datetime.fromtimestamp(row["created_at"], dt.UTC).strftime(
                "%Y-%m-%d %H:%M:%S"
            ),
        }
        for row in rows
    ]
