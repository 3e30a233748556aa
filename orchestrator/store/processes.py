"""Process, version and node queries."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import Connection, select, text, update

from orchestrator.store.records import ProcessRecord, dumps, loads
from orchestrator.store.tables import nodes, process_versions, processes


def checksum(definition: dict[str, Any]) -> str:
    """Of the content, not the key order: reordering a file is not a new version."""
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _record(row: Any) -> ProcessRecord:
    m = row._mapping
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


def _current() -> Any:
    return select(
        processes, process_versions.c.id.label("version_id"), process_versions.c.definition
    ).join(
        process_versions,
        (process_versions.c.process_id == processes.c.id)
        & (process_versions.c.version == processes.c.current_version),
    )


MAX_ID = 2**31 - 1


def get_process(conn: Connection, key: str | int) -> ProcessRecord | None:
    """By conv_id (a number) or slug."""
    text = str(key)
    numeric = text.isascii() and text.isdigit()  # not "²", which isdigit() also accepts
    if numeric and int(text) > MAX_ID:
        return None  # no such id, and PostgreSQL would refuse the out-of-range number
    cond = processes.c.id == int(text) if numeric else processes.c.slug == text
    row = conn.execute(_current().where(cond)).first()
    return _record(row) if row else None


def list_processes(conn: Connection) -> list[ProcessRecord]:
    return [_record(r) for r in conn.execute(_current().order_by(processes.c.id))]


def get_version(conn: Connection, version_id: int) -> tuple[int, int, dict[str, Any]] | None:
    row = conn.execute(
        select(
            process_versions.c.process_id, process_versions.c.version, process_versions.c.definition
        ).where(process_versions.c.id == version_id)
    ).first()
    return (row.process_id, row.version, loads(row.definition)) if row else None


def list_versions(conn: Connection, process_id: int) -> list[dict[str, Any]]:
    stmt = (
        select(
            process_versions.c.id,
            process_versions.c.version,
            process_versions.c.checksum,
            process_versions.c.source,
            process_versions.c.created_at,
        )
        .where(process_versions.c.process_id == process_id)
        .order_by(process_versions.c.version)
    )
    return [dict(r._mapping) for r in conn.execute(stmt)]


# Any constant shared by every process of the deployment; it names the deploy lock.
_DEPLOY_LOCK_KEY = 0x6F726368  # "orch"


def lock_deploys(conn: Connection) -> None:
    """Serialize deploys until this transaction ends. Several processes starting together
    on an empty PostgreSQL database all deploy the shipped processes: without this they
    race to insert the same slug. (SQLite's BEGIN IMMEDIATE already serializes writers.)"""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _DEPLOY_LOCK_KEY})


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
        current = conn.execute(
            select(process_versions.c.checksum).where(process_versions.c.id == existing.version_id)
        ).scalar_one()
        if current == digest:
            return existing, False
        version = existing.current_version + 1
        process_id = existing.id
    else:
        version = 1
        process_id = conn.execute(
            processes.insert()
            .values(slug=slug, title=title, current_version=0, created_at=now, updated_at=now)
            .returning(processes.c.id)
        ).scalar_one()
    version_id = conn.execute(
        process_versions.insert()
        .values(
            process_id=process_id,
            version=version,
            definition=dumps(definition),
            checksum=digest,
            source=source,
            created_at=now,
        )
        .returning(process_versions.c.id)
    ).scalar_one()
    conn.execute(nodes.insert(), [{"version_id": version_id, **n} for n in node_rows])
    conn.execute(
        update(processes)
        .where(processes.c.id == process_id)
        .values(current_version=version, title=title, updated_at=now)
    )
    record = get_process(conn, process_id)
    assert record is not None
    return record, True


def wait_node_ids(conn: Connection, process_id: int) -> list[str]:
    """Ids of nodes with callback URLs in any version of the process (tasks may wait on
    old ones): wait nodes, and start nodes (an ``incoming_sms`` process's URL)."""
    stmt = (
        select(nodes.c.node_id)
        .distinct()
        .join(process_versions, process_versions.c.id == nodes.c.version_id)
        .where(process_versions.c.process_id == process_id, nodes.c.kind.in_(("wait", "start")))
    )
    return [r[0] for r in conn.execute(stmt)]
