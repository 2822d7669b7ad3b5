"""Who is on the other end of a request: the TCP peer, or, behind a proxy listed in TRUSTED_PROXIES, what that
proxy says (X-Forwarded-For, X-Forwarded-Proto). One rule for the login throttle, the rate limits and the edge."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from backend.settings import get_settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(trusted_proxies: str) -> tuple[Network, ...]:
    out: list[Network] = []
    for part in trusted_proxies.split(","):
        try:
            if part.strip():
                out.append(ipaddress.ip_network(part.strip(), strict=False))
        except ValueError:
            continue
    return tuple(out)


def is_trusted_proxy(address: str | None, trusted_proxies: str | None = None) -> bool:
    """Whether `address` is one of the configured proxies (default: the TRUSTED_PROXIES setting)."""
    networks = _networks(get_settings().trusted_proxies if trusted_proxies is None else trusted_proxies)
    if not address or not networks:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def _forwarded_for(headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    values = [bytes(value).decode("latin-1") for name, value in headers if bytes(name).lower() == b"x-forwarded-for"]
    return [hop.strip() for line in values for hop in line.split(",") if hop.strip()]


def client_address(scope: Any) -> str | None:
    """The client's address: the TCP peer, or, behind a trusted proxy, the nearest X-Forwarded-For entry that is
    not one of the proxies. X-Forwarded-For is never believed otherwise."""
    client = scope.get("client")
    peer = str(client[0]) if client else None
    if not is_trusted_proxy(peer):
        return peer
    for hop in reversed(_forwarded_for(scope.get("headers") or ())):
        if not is_trusted_proxy(hop):
            return hop[:100]
    return peer
