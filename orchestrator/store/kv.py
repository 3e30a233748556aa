"""Small key-value settings and the encrypted Twilio account tokens."""

from __future__ import annotations

from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from orchestrator.store.tables import settings, twilio_accounts


def get_setting(conn: Connection, key: str) -> str | None:
    return conn.execute(select(settings.c.value).where(settings.c.key == key)).scalar()


def set_setting_if_absent(conn: Connection, key: str, value: str) -> str:
    """Store ``value`` unless a value exists; returns the stored one (first writer wins)."""
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(insert(settings).values(key=key, value=value).on_conflict_do_nothing())
    stored = get_setting(conn, key)
    assert stored is not None
    return stored


def set_setting(conn: Connection, key: str, value: str) -> None:
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = insert(settings).values(key=key, value=value)
    conn.execute(stmt.on_conflict_do_update(index_elements=[settings.c.key], set_={"value": value}))


def save_account_token(
    conn: Connection, account_sid: str, token_encrypted: str, now: float
) -> None:
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = insert(twilio_accounts).values(
        account_sid=account_sid, token_encrypted=token_encrypted, updated_at=now
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[twilio_accounts.c.account_sid],
        set_={"token_encrypted": token_encrypted, "updated_at": now},
    )
    conn.execute(stmt)


def get_account_token(conn: Connection, account_sid: str) -> str | None:
    return conn.execute(
        select(twilio_accounts.c.token_encrypted).where(
            twilio_accounts.c.account_sid == account_sid
        )
    ).scalar()
