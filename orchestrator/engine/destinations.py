"""Where ``api_call`` may connect: public addresses only, unless the operator opts in.

A process author (or whoever fills a templated URL) must not reach the machine's own
services, the cloud metadata address or the private network through the engine (SSRF).
The host is resolved here and every address it resolves to is checked: loopback,
private, link-local, unspecified, multicast and other non-global addresses are refused,
in any spelling (``127.1``, ``2130706433``, ``::ffff:127.0.0.1``). The request is then
sent to the checked address itself (the Host header and TLS name stay the URL's), so a
second DNS answer cannot swap it. Redirects are not followed (see Runtime.http).

``ORCH_API_CALL_ALLOW`` opts in: comma-separated networks (``10.0.0.0/8``, ``127.0.0.1``)
and host names (``billing.internal``) that may be called although not public.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LABEL = r"[a-z0-9_]([a-z0-9_-]*[a-z0-9])?"
_HOST_NAME = re.compile(rf"{_LABEL}(\.{_LABEL})*")


class DestinationForbidden(Exception):
    """The URL's host is (or resolves to) an address api_call may not reach."""


class UnresolvableHost(Exception):
    pass


@dataclass(frozen=True)
class Allowlist:
    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, spec: str | None) -> Allowlist:
        """``"127.0.0.1/8, 10.0.0.0/8, billing.internal"``; ValueError names a bad item."""
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for item in (spec or "").split(","):
            item = item.strip().lower()
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
                continue
            except ValueError:
                pass
            if not _HOST_NAME.fullmatch(item.rstrip(".")):
                raise ValueError(f"ORCH_API_CALL_ALLOW: {item!r} is not a network or host name")
            hosts.add(item.rstrip("."))
        return cls(tuple(networks), frozenset(hosts))

    def allows(self, address: IPAddress) -> bool:
        return any(address.version == n.version and address in n for n in self.networks)


def _unwrapped(address: IPAddress) -> IPAddress:
    """The IPv4 address inside an IPv4-mapped or NAT64 IPv6 address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def is_public(address: IPAddress) -> bool:
    inner = _unwrapped(address)
    return inner.is_global and not inner.is_multicast


async def resolve(host: str, port: int, allow: Allowlist) -> str:
    """The address to connect to for ``host``; DestinationForbidden unless every address
    it resolves to is public or allowed."""
    name = host.lower().rstrip(".")
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UnresolvableHost(f"cannot resolve {host!r} ({exc})") from exc
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses:
        raise UnresolvableHost(f"cannot resolve {host!r}")
    if name not in allow.hosts:
        for address in addresses:
            if not (
                is_public(address) or allow.allows(address) or allow.allows(_unwrapped(address))
            ):
                raise DestinationForbidden(
                    f"{host!r} is {address}, which is not a public address "
                    "(ORCH_API_CALL_ALLOW can allow it)"
                )
    return str(addresses[0])
