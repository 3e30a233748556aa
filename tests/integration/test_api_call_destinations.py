"""api_call refuses non-public destinations (SSRF) unless ORCH_API_CALL_ALLOW opts in."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from servers import run_app
from stack import running_stack
from test_logic_api_call import APP, CALLS, process

from orchestrator.config import ConfigError, Settings
from orchestrator.engine.destinations import Allowlist, DestinationForbidden, resolve

FORBIDDEN = [
    "127.0.0.1",
    "127.1",
    "2130706433",  # 127.0.0.1 as one number
    "0x7f.1",
    "localhost",
    "::1",
    "::ffff:127.0.0.1",
    "64:ff9b::7f00:1",  # NAT64 spelling of 127.0.0.1
    "0.0.0.0",
    "::",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "100.64.0.1",  # shared address space (carrier NAT)
    "169.254.169.254",  # cloud metadata
    "fe80::1",
    "fd00::1",
    "224.0.0.1",
    "ff02::1",
    "255.255.255.255",
]


@pytest.mark.parametrize("host", FORBIDDEN)
def test_non_public_addresses_are_refused_by_default(host: str) -> None:
    with pytest.raises(DestinationForbidden, match="not a public address"):
        asyncio.run(resolve(host, 80, Allowlist()))


def test_public_addresses_pass_and_the_allowlist_opts_in() -> None:
    assert asyncio.run(resolve("8.8.8.8", 443, Allowlist())) == "8.8.8.8"
    assert asyncio.run(resolve("2001:4860:4860::8888", 443, Allowlist())) == "2001:4860:4860::8888"
    allow = Allowlist.parse("127.0.0.0/8, 10.0.0.0/8, localhost")
    for host in ("127.1", "2130706433", "::ffff:127.0.0.1", "10.9.9.9"):
        assert asyncio.run(resolve(host, 80, allow)) in ("127.0.0.1", "10.9.9.9", "::ffff:7f00:1")
    assert asyncio.run(resolve("localhost", 80, allow))
    for host in ("192.168.1.1", "169.254.169.254", "::1"):
        with pytest.raises(DestinationForbidden):
            asyncio.run(resolve(host, 80, allow))


def test_a_malformed_allowlist_stops_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_API_CALL_ALLOW", "10.0.0.0/8, not a host!")
    with pytest.raises(ConfigError, match="ORCH_API_CALL_ALLOW"):
        Settings.from_env()
    monkeypatch.setenv("ORCH_API_CALL_ALLOW", "10.0.0.0/8,billing.internal")
    assert Settings.from_env().api_call_allow == "10.0.0.0/8,billing.internal"


@pytest.fixture
def server() -> Iterator[str]:
    CALLS.clear()
    with run_app(APP) as url:
        yield url


def test_api_call_to_loopback_is_refused_without_reaching_it(db_url: str, server: str) -> None:
    """The orchestrator's own API and the test server both listen on 127.0.0.1: with
    no allowlist, neither is called, and the task takes its error path with a named code."""
    with running_stack(db_url) as s:
        own = s.api.replace("127.0.0.1", "2130706433")
        s.deploy(
            process("to-loopback", {"url": server + "/echo/x"}),
            process("to-self", {"url": own + "/api/v1/processes"}),
        )
        for slug in ("to-loopback", "to-self"):
            done = s.run(slug, {})
            assert (done["outcome"], done["node"]["id"]) == ("escalation", "failed"), done
            assert done["data"]["code"] == "api_destination_forbidden", done["data"]
            assert "ORCH_API_CALL_ALLOW" in done["data"]["message"]
            assert "processes" not in done["data"]
        assert CALLS == []
