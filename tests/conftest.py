"""Shared fixtures: a fresh, migrated database per test, on SQLite and PostgreSQL.

Tests that take ``db_url`` run once per database. PostgreSQL is used when reachable at
ORCH_TEST_PG_URL (default postgresql://postgres@127.0.0.1:5432/test); when it is not,
those runs are skipped locally and fail under CI (CI=true). ORCH_TEST_DBS=sqlite (or
postgresql) limits the runs to one database.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from orchestrator.store.db import normalize_url, upgrade

PG_ADMIN_URL = normalize_url(
    os.environ.get("ORCH_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
)
DATABASES = [d.strip() for d in os.environ.get("ORCH_TEST_DBS", "sqlite,postgresql").split(",")]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Property tests explore new random cases on every local run; under CI they replay the
# same cases, so a red CI always means a change broke something (not an unlucky draw).
hypothesis.settings.register_profile("ci", derandomize=True, database=None)
if IN_CI:
    hypothesis.settings.load_profile("ci")


def _pg_admin():  # type: ignore[no-untyped-def]
    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)


def _pg_reachable() -> bool:
    try:
        engine = _pg_admin()
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


def _pg_url(name: str) -> str:
    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str | None]:
    if "postgresql" not in DATABASES or not _pg_reachable():
        yield None
        return
    name = f"orch_tpl_{os.getpid()}"
    admin = _pg_admin()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    upgrade(_pg_url(name))
    yield name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _fresh_sqlite(template: Path, tmp_path: Path) -> str:
    path = tmp_path / "orchestrator.db"
    shutil.copy(template, path)
    return f"sqlite:///{path}"


def _fresh_pg(template: str) -> str:
    name = f"orch_t_{uuid.uuid4().hex[:12]}"
    admin = _pg_admin()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    admin.dispose()
    return name


def _drop_pg(name: str) -> None:
    admin = _pg_admin()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database of each kind."""
    kind = request.param
    if kind not in DATABASES:
        pytest.skip(f"{kind} not in ORCH_TEST_DBS")
    if kind == "sqlite":
        yield _fresh_sqlite(request.getfixturevalue("sqlite_template"), tmp_path)
        return
    yield from _pg_database(request)


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A migrated, empty PostgreSQL database (for what only PostgreSQL has)."""
    if "postgresql" not in DATABASES:
        pytest.skip("postgresql not in ORCH_TEST_DBS")
    yield from _pg_database(request)


def _pg_database(request: pytest.FixtureRequest) -> Iterator[str]:
    template = request.getfixturevalue("pg_template")
    if template is None:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required under CI but {PG_ADMIN_URL} is unreachable")
        pytest.skip("PostgreSQL is not reachable")
    name = _fresh_pg(template)
    try:
        yield _pg_url(name)
    finally:
        _drop_pg(name)


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A migrated SQLite database, for tests that are about SQLite itself."""
    return _fresh_sqlite(sqlite_template, tmp_path)


@pytest.fixture(autouse=True)
def _no_listener_left_running() -> Iterator[None]:
    """An engine that stops must stop its LISTEN thread too (it would retry forever
    against a database that no longer exists)."""
    before = {t.ident for t in threading.enumerate() if t.name == "pg-listener"}
    yield
    left = [t for t in threading.enumerate() if t.name == "pg-listener" and t.ident not in before]
    for t in left:
        t.join(3)
    assert not [t for t in left if t.is_alive()], "a pg-listener thread outlived its engine"
