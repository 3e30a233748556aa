"""Process, version and node queries. SQL: store/sql/queries.sql."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

from orchestrator.store import sql
from orchestrator.store.records import ProcessRecord, dumps, loads

Q = sql.QUERIES


def checksum(definition: dict[str, Any]) -> str:
    """Of the content, not the key order: reordering a file is not a new version."""
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _record(m: Mapping[str, Any]) -> ProcessRecord:
    return ProcessRecord(
        id=m["id"],
        slug=m["slug"],
        title=m["title"],
        current_version=m["current_version"],
        version_id=m["version_id"],
        definition=loads(m["definition"]) or {},
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


MAX_ID = 2**31 - 1


def get_process(conn: Connection, key: str | int) -> ProcessRecord | None:
    """By conv_id (a number) or slug."""
    text = str(key)
    numeric = text.isascii() and text.isdigit()  # not "²", which isdigit() also accepts
    if numeric and int(text) > MAX_ID:
        return None  # no such id, and PostgreSQL would refuse the out-of-range number
    if numeric:
        cursor = sql.execute(conn, Q["process_by_id"], {"id": int(text)})
    else:
        cursor = sql.execute(conn, Q["process_by_slug"], {"slug": text})
    row = sql.first(cursor)
    return _record(row) if row else None


def list_processes(conn: Connection) -> list[ProcessRecord]:
    return [_record(m) for m in sql.mappings(sql.execute(conn, Q["processes"]))]


def get_version(conn: Connection, version_id: int) -> tuple[int, int, dict[str, Any]] | None:
    row = sql.execute(conn, Q["version"], {"version_id": version_id}).fetchone()
    return (row[0], row[1], loads(row[2])) if row else None


def list_versions(conn: Connection, process_id: int) -> list[dict[str, Any]]:
    return sql.mappings(sql.execute(conn, Q["versions"], {"process_id": process_id}))


# Any constant shared by every process of the deployment; it names the deploy lock.
_DEPLOY_LOCK_KEY = 0x6F726368  # "orch"


def lock_deploys(conn: Connection) -> None:
    """Serialize deploys until this transaction ends. Several processes starting together
    on an empty PostgreSQL database all deploy the shipped processes: without this they
    race to insert the same slug. (SQLite's BEGIN IMMEDIATE already serializes writers.)"""
    if conn.dialect.name == "postgresql":
        sql.execute(conn, Q["lock_deploys"], {"key": _DEPLOY_LOCK_KEY}).fetchall()


def deploy(
    conn: Connection,
    slug: str,
    title: str,
    definition: dict[str, Any],
    node_rows: list[dict[str, str]],
    *,
    source: str | None,
    now: float,
) -> tuple[ProcessRecord, bool]:
    """Store ``definition`` as the process's new current version, unless it is identical
    to the current one. Returns the process and whether a version was created."""
    digest = checksum(definition)
    existing = get_process(conn, slug)
    if existing is not None:
        params = {"version_id": existing.version_id}
        if sql.scalar(sql.execute(conn, Q["version_checksum"], params)) == digest:
            return existing, False
        version = existing.current_version + 1
        process_id = existing.id
    else:
        version = 1
        params_p = {"slug": slug, "title": title, "now": now}
        process_id = int(sql.scalar(sql.execute(conn, Q["insert_process"], params_p)))
    values = {
        "process_id": process_id,
        "version": version,
        "definition": dumps(definition),
        "checksum": digest,
        "source": source,
        "now": now,
    }
    version_id = int(sql.scalar(sql.execute(conn, Q["insert_version"], values)))
    if node_rows:
        rows = [{"version_id": version_id, **n} for n in node_rows]
        sql.execute_many(conn, Q["insert_node"], rows)
    current = {"process_id": process_id, "version": version, "title": title, "now": now}
    sql.execute(conn, Q["set_current_version"], current)
    record = get_process(conn, process_id)
    assert record is not None
    return record, True


def wait_node_ids(conn: Connection, process_id: int) -> list[str]:
    """Ids of nodes with callback URLs in any version of the process (tasks may wait on
    old ones): wait nodes, and start nodes (an ``incoming_sms`` process's URL)."""
    params = {"process_id": process_id}
    return [str(n) for n in sql.column(sql.execute(conn, Q["callback_node_ids"], params))]
