"""API keys and the Corezoid replay guard. SQL: store/sql/queries.sql."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from orchestrator.store import sql

Q = sql.QUERIES


@dataclass(frozen=True)
class ApiKeyRecord:
    login: str
    secret_hash: str
    secret_encrypted: str
    created_at: float
    revoked_at: float | None
    role: str = "operate"


def _record(m: Mapping[str, Any]) -> ApiKeyRecord:
    return ApiKeyRecord(
        m["login"],
        m["secret_hash"],
        m["secret_encrypted"],
        m["created_at"],
        m["revoked_at"],
        m["role"],
    )


def insert_key(
    conn: Connection,
    login: str,
    secret_hash: str,
    secret_encrypted: str,
    now: float,
    role: str = "operate",
) -> bool:
    """False when the login is taken (revoked logins stay taken: ids in the history
    must keep naming one key)."""
    params = {
        "login": login,
        "secret_hash": secret_hash,
        "secret_encrypted": secret_encrypted,
        "now": now,
        "role": role,
    }
    return sql.execute(conn, Q["insert_api_key"], params).fetchone() is not None


def list_keys(conn: Connection) -> list[ApiKeyRecord]:
    return [_record(m) for m in sql.mappings(sql.execute(conn, Q["api_keys"]))]


def get_key(conn: Connection, login: str) -> ApiKeyRecord | None:
    row = sql.first(sql.execute(conn, Q["api_key_by_login"], {"login": login}))
    return _record(row) if row else None


def find_by_hash(conn: Connection, secret_hash: str) -> ApiKeyRecord | None:
    row = sql.first(sql.execute(conn, Q["api_key_by_hash"], {"secret_hash": secret_hash}))
    return _record(row) if row else None


def any_active(conn: Connection) -> bool:
    return sql.execute(conn, Q["any_active_api_key"]).fetchone() is not None


def any_created(conn: Connection) -> bool:
    """A key was ever created here, even if every one is revoked since."""
    return sql.execute(conn, Q["any_api_key"]).fetchone() is not None


def revoke(conn: Connection, login: str, now: float) -> bool:
    """True when an active key was revoked."""
    return bool(sql.execute(conn, Q["revoke_api_key"], {"login": login, "now": now}).rowcount == 1)


def reencrypt(conn: Connection, login: str, secret_encrypted: str) -> None:
    params = {"login": login, "secret_encrypted": secret_encrypted}
    sql.execute(conn, Q["reencrypt_api_key"], params)


def first_sighting(conn: Connection, key: str, now: float, forget_before: float) -> bool:
    """Record a request key; False if it was seen already (a replay). Keys older than
    ``forget_before`` are dropped first: past the window their requests are refused
    as stale anyway."""
    sql.execute(conn, Q["forget_seen_requests"], {"forget_before": forget_before})
    return (
        sql.execute(conn, Q["insert_seen_request"], {"key": key, "now": now}).fetchone() is not None
    )
