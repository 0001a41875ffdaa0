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
        self._pending: dict[tuple[str, int], asyncio.Future[Addresses]] = {}

    async def resolve(self, host: str, port: int) -> Addresses:
        if (fixed := literal(host)) is not None:
            return fixed
        key = (host, port)
        loop = asyncio.get_running_loop()
        known = self._known.get(key)
        if known is not None and known[0] > loop.time():
            return known[1]
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        self._pending[key] = fut = loop.create_future()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            addrs = list(dict.fromkeys((family, str(addr[0])) for family, _, _, _, addr in infos))
            self._known[key] = (loop.time() + TTL_S, addrs)
            fut.set_result(addrs)
            return addrs
        except asyncio.CancelledError:
            fut.cancel()
            raise
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: a lookup nobody else waited for is not an "unretrieved" error
            raise
        finally:
            del self._pending[key]

    def forget(self, host: str, port: int) -> None:
        """None of the addresses answered: look the name up again next time."""
        self._known.pop((host, port), None)
