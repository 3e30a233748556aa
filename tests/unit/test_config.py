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


def test_base_urls_must_be_web_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_PUBLIC_URL", "https://sms.example.com/")
    monkeypatch.setenv("ORCH_TWILIO_API_URL", "http://127.0.0.1:8010")
    s = Settings.from_env()
    assert (s.public_url, s.twilio_api_url) == ("https://sms.example.com", "http://127.0.0.1:8010")
    for bad in ("sms.example.com", "https://", "ftp://x"):
        monkeypatch.setenv("ORCH_PUBLIC_URL", bad)
        with pytest.raises(ConfigError, match="ORCH_PUBLIC_URL must be an http:// or https:// URL"):
            Settings.from_env()
    monkeypatch.delenv("ORCH_PUBLIC_URL")
    monkeypatch.setenv("ORCH_TWILIO_API_URL", "127.0.0.1:8010")
    with pytest.raises(ConfigError, match="ORCH_TWILIO_API_URL"):
        Settings.from_env()


def test_rate_limits_are_checked_when_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_TWILIO_RATE_LIMITS", "+15005550006=1, MG1=2.5")
    assert Settings.from_env().twilio_rate_limits == "+15005550006=1, MG1=2.5"
    monkeypatch.setenv("ORCH_TWILIO_RATE_LIMITS", "+15005550006=1,xyz")
    with pytest.raises(ConfigError, match="ORCH_TWILIO_RATE_LIMITS: 'xyz' is not sender=rate"):
        Settings.from_env()


def test_seed_004_credential_names_are_aliases(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_ACCOUNT", "TWILIO_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TWILIO_ACCOUNT", "AC" + "1" * 32)
    monkeypatch.setenv("TWILIO_TOKEN", "seed-004-token")
    s = Settings.from_env()
    assert (s.twilio_account_sid, s.twilio_auth_token) == ("AC" + "1" * 32, "seed-004-token")
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "seed-004-token")  # the same: fine
    assert Settings.from_env().twilio_auth_token == "seed-004-token"
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "another")
    with pytest.raises(ConfigError, match="TWILIO_AUTH_TOKEN and TWILIO_TOKEN"):
        Settings.from_env()
