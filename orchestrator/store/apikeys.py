"""API keys and the Corezoid replay guard."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from orchestrator.store.tables import api_keys, seen_requests

# Built once: these run on every API request (see store/tasks.py for why it matters).
_BY_LOGIN = select(api_keys).where(api_keys.c.login == bindparam("login"))
_BY_HASH = select(api_keys).where(api_keys.c.secret_hash == bindparam("secret_hash"))
_ANY_ACTIVE = select(api_keys.c.login).where(api_keys.c.revoked_at.is_(None)).limit(1)
_ANY = select(api_keys.c.login).limit(1)


@dataclass(frozen=True)
class ApiKeyRecord:
    login: str
    secret_hash: str
    secret_encrypted: str
    created_at: float
    revoked_at: float | None
    role: str = "operate"


def _record(row: object) -> ApiKeyRecord:
    m = row._mapping  # type: ignore[attr-defined]
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
    try:
        with conn.begin_nested():
            conn.execute(
                api_keys.insert().values(
                    login=login,
                    secret_hash=secret_hash,
                    secret_encrypted=secret_encrypted,
                    created_at=now,
                    role=role,
                )
            )
    except IntegrityError:
        return False
    return True


def list_keys(conn: Connection) -> list[ApiKeyRecord]:
    return [_record(r) for r in conn.execute(select(api_keys).order_by(api_keys.c.created_at))]


def get_key(conn: Connection, login: str) -> ApiKeyRecord | None:
    row = conn.execute(_BY_LOGIN, {"login": login}).first()
    return _record(row) if row else None


def find_by_hash(conn: Connection, secret_hash: str) -> ApiKeyRecord | None:
    row = conn.execute(_BY_HASH, {"secret_hash": secret_hash}).first()
    return _record(row) if row else None


def any_active(conn: Connection) -> bool:
    return conn.execute(_ANY_ACTIVE).first() is not None


def any_created(conn: Connection) -> bool:
    """A key was ever created here, even if every one is revoked since."""
    return conn.execute(_ANY).first() is not None


def revoke(conn: Connection, login: str, now: float) -> bool:
    """True when an active key was revoked."""
    result = conn.execute(
        update(api_keys)
        .where(api_keys.c.login == login, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return result.rowcount == 1


def reencrypt(conn: Connection, login: str, secret_encrypted: str) -> None:
    conn.execute(
        update(api_keys).where(api_keys.c.login == login).values(secret_encrypted=secret_encrypted)
    )


def first_sighting(conn: Connection, key: str, now: float, forget_before: float) -> bool:
    """Record a request key; False if it was seen already (a replay). Keys older than
    ``forget_before`` are dropped first: past the window their requests are refused
    as stale anyway."""
    conn.execute(delete(seen_requests).where(seen_requests.c.seen_at < forget_before))
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = insert(seen_requests).values(key=key, seen_at=now).on_conflict_do_nothing()
    return conn.execute(stmt.returning(seen_requests.c.key)).first() is not None
