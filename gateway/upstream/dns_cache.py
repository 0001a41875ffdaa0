"""Vendor host names resolved once per `TTL_S` for the REST passthrough's new connections, like the aiohttp
sessions' `ttl_dns_cache=300`: a burst of new connections to one vendor makes one lookup, not one each (the
system resolver is a thread and, without a local cache, a DNS round trip). Concurrent lookups of one name
share one; an IP literal is never looked up.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from functools import lru_cache

TTL_S = 300.0
Addresses = list[tuple[int, str]]  # (address family, IP)


@lru_cache(maxsize=64)
def literal(host: str) -> Addresses | None:
    """The address a host that is an IP already names, else None."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    return [(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, str(ip))]


class DnsCache:
    def __init__(self) -> None:
        self._known: dict[tuple[str, int], tuple[float, Addresses]] = {}
        # the lookup is the cache's task, not its first caller's: a caller whose deadline passes stops waiting
        # (its `shield`) without cancelling the lookup the others wait for
        self._pending: dict[tuple[str, int], asyncio.Task[Addresses]] = {}

    async def resolve(self, host: str, port: int) -> Addresses:
        if (fixed := literal(host)) is not None:
            return fixed
        key = (host, port)
        known = self._known.get(key)
        if known is not None and known[0] > asyncio.get_running_loop().time():
            return known[1]
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = asyncio.ensure_future(self._lookup(key))
            pending.add_done_callback(_retrieved)
        return await asyncio.shield(pending)

    async def _lookup(self, key: tuple[str, int]) -> Addresses:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(key[0], key[1], type=socket.SOCK_STREAM)
            addrs = list(dict.fromkeys((family, str(addr[0])) for family, _, _, _, addr in infos))
            self._known[key] = (loop.time() + TTL_S, addrs)
            return addrs
        finally:
            del self._pending[key]

    def forget(self, host: str, port: int) -> None:
        """None of the addresses answered: look the name up again next time."""
        self._known.pop((host, port), None)

    async def close(self) -> None:
        """Shutdown: lookups nobody waits for any more end with the pool."""
        pending = list(self._pending.values())
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def _retrieved(task: asyncio.Task[Addresses]) -> None:
    if not task.cancelled():
        task.exception()  # a failed lookup whose callers all left is not an "unretrieved" error
