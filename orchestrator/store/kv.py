"""Small key-value settings and the encrypted Twilio account tokens.
SQL: store/sql/queries.sql."""

from __future__ import annotations

from sqlalchemy import Connection

from orchestrator.store import sql

Q = sql.QUERIES


def get_setting(conn: Connection, key: str) -> str | None:
    value = sql.scalar(sql.execute(conn, Q["setting"], {"key": key}))
    return None if value is None else str(value)


def set_setting_if_absent(conn: Connection, key: str, value: str) -> str:
    """Store ``value`` unless a value exists; returns the stored one (first writer wins)."""
    sql.execute(conn, Q["insert_setting"], {"key": key, "value": value})
    stored = get_setting(conn, key)
    assert stored is not None
    return stored


def set_setting(conn: Connection, key: str, value: str) -> None:
    sql.execute(conn, Q["upsert_setting"], {"key": key, "value": value})


def save_account_token(
    conn: Connection, account_sid: str, token_encrypted: str, now: float
) -> None:
    params = {"account_sid": account_sid, "token_encrypted": token_encrypted, "now": now}
    sql.execute(conn, Q["upsert_account_token"], params)


def get_account_token(conn: Connection, account_sid: str) -> str | None:
    value = sql.scalar(sql.execute(conn, Q["account_token"], {"account_sid": account_sid}))
    return None if value is None else str(value)
