"""Settings from the environment: a value that cannot be used is named, not a bare
ValueError from deep inside."""

from __future__ import annotations

import pytest

from orchestrator.config import ConfigError, Settings


def test_numbers_are_read_and_bad_ones_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_LEASE_SECONDS", "12.5")
    monkeypatch.setenv("ORCH_DB_POOL_SIZE", "3")
    monkeypatch.setenv("ORCH_RETENTION_DAYS", "")  # empty: the default
    s = Settings.from_env()
    assert (s.lease_seconds, s.db_pool_size, s.retention_days) == (12.5, 3, 30.0)

    monkeypatch.setenv("ORCH_LEASE_SECONDS", "30s")
    with pytest.raises(ConfigError, match="ORCH_LEASE_SECONDS must be a number, not '30s'"):
        Settings.from_env()
    monkeypatch.setenv("ORCH_LEASE_SECONDS", "30")
    monkeypatch.setenv("ORCH_DB_POOL_SIZE", "1.5")
    with pytest.raises(ConfigError, match="ORCH_DB_POOL_SIZE must be a whole number"):
        Settings.from_env()
