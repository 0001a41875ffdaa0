"""Remote audio for batch speech-to-text (Deepgram `{"url": ...}`), fetched only from allowed prefixes.

Off by default: with an empty `fetch.allow` every URL is refused with a clear message. The URL is
normalised first (dot segments, even percent-encoded ones, resolved; host lower-cased) and that
normalised URL is both the one compared with the allow-list and the one fetched. A host name that
resolves to a loopback, link-local or private address is refused unless `fetch.private_hosts` names it
(checked by the resolver at connect time, so DNS cannot change the answer in between). Fetches use a
session of their own with no cookie jar, do not follow redirects (a redirect could leave the allowed
prefixes), and stay within `fetch.timeout_s` and `limits.max_body_bytes`.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from gateway.config import FetchSettings
from gateway.dialects.common import SETTINGS
from gateway.errors import GatewayError

CHUNK = 32 * 1024
MAX_URL_CHARS = 2048
FETCH_SESSION = web.AppKey("fetch_session", aiohttp.ClientSession)


def is_private(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_link_local or ip.is_private or ip.is_reserved or ip.is_multicast \
        or ip.is_unspecified


class PublicOnlyResolver(AbstractResolver):
    """aiohttp's resolver, refusing private addresses for every host not named in `private_hosts`."""

    def __init__(self, private_hosts: list[str]) -> None:
        self.inner = aiohttp.DefaultResolver()
        self.private_hosts = {h.lower() for h in private_hosts}

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET,
                      ) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        if host.lower() not in self.private_hosts and any(is_private(r["host"]) for r in results):
            raise OSError(f"{host} resolves to a private address")
        return results

    async def close(self) -> None:
        await self.inner.close()


def fetch_session(settings: FetchSettings) -> aiohttp.ClientSession:
    """The session remote audio is fetched with: no cookie jar (one caller's cookies never reach another's
    fetch), the private-address guard in its resolver."""
    connector = aiohttp.TCPConnector(resolver=PublicOnlyResolver(settings.private_hosts), limit=64,
                                     ttl_dns_cache=None, use_dns_cache=False)
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())


def _refused(why: str) -> GatewayError:
    return GatewayError("invalid_request", f"This gateway does not fetch remote audio from that URL ({why}): send "
                        "the audio bytes in the request body (or have the operator allow the URL's prefix in "
                        "`fetch.allow`)", "url")


def normalise(url: str) -> URL:
    """The URL that will be fetched, in the form the allow-list is compared with."""
    if len(url) > MAX_URL_CHARS:
        raise _refused("too long")
    try:
        u = URL(url)
    except ValueError:
        raise _refused("malformed") from None
    if u.scheme not in ("http", "https") or not u.host:
        raise _refused("not an http(s) URL")
    if u.raw_user is not None or u.raw_password is not None:
        raise _refused("credentials in URLs are not fetched")
    return u.with_fragment(None)


async def fetch_audio(app: web.Application, url: Any) -> AsyncIterator[bytes]:
    if not isinstance(url, str) or not url.strip():
        raise GatewayError("invalid_request", "Request body must contain a `url` string, or send the audio bytes",
                           "url")
    settings = app[SETTINGS]
    target = normalise(url.strip())
    if not settings.fetch.allows(str(target)):
        raise _refused("not an allowed prefix")
    limit = settings.limits.max_body_bytes
    total = 0
    try:
        async with app[FETCH_SESSION].get(target, allow_redirects=False,
                                          timeout=aiohttp.ClientTimeout(total=settings.fetch.timeout_s)) as resp:
            if resp.status != 200:
                raise GatewayError("invalid_request", f"Could not fetch the remote audio: HTTP {resp.status}", "url")
            async for chunk in resp.content.iter_chunked(CHUNK):
                total += len(chunk)
                if total > limit:
                    raise GatewayError("payload_too_large", "The remote audio is larger than this gateway accepts")
                yield chunk
    except aiohttp.ClientConnectorError as exc:
        why = "it resolves to a private address" if "private address" in str(exc.os_error) else "cannot connect"
        raise GatewayError("invalid_request", f"Could not fetch the remote audio: {why}", "url") from None
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
        raise GatewayError("invalid_request", f"Could not fetch the remote audio: {type(exc).__name__}",
                           "url") from None
