"""The relay's DNS cache: one lookup per name shared by concurrent callers, each with its own deadline."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from gateway.upstream.dns_cache import DnsCache


async def test_a_caller_whose_deadline_passes_does_not_cancel_the_lookup_for_the_others(
        monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    lookups = []

    async def slow_getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
        lookups.append(host)
        await asyncio.sleep(0.05)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.7", port))]

    monkeypatch.setattr(loop, "getaddrinfo", slow_getaddrinfo)
    dns = DnsCache()
    first = asyncio.ensure_future(asyncio.wait_for(dns.resolve("vendor.test", 443), 0.01))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(dns.resolve("vendor.test", 443))
    with pytest.raises(TimeoutError):
        await first
    assert await asyncio.wait_for(second, 2) == [(socket.AF_INET, "192.0.2.7")]
    assert await dns.resolve("vendor.test", 443) == [(socket.AF_INET, "192.0.2.7")]  # cached
    assert lookups == ["vendor.test"]
