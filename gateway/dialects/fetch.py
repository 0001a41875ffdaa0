"""Remote audio for batch speech-to-text (Deepgram `{"url": ...}`), fetched only from allowed prefixes.

Off by default: with an empty `fetch.allow` every URL is refused with a clear message. Allowed URLs
are streamed with the gateway's shared aiohttp session, without following redirects (a redirect
could leave the allowed prefixes), within `fetch.timeout_s` and `limits.max_body_bytes`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from gateway.dialects.common import GRADIUM, SETTINGS
from gateway.errors import GatewayError

CHUNK = 32 * 1024


async def fetch_audio(app: web.Application, url: Any) -> AsyncIterator[bytes]:
    if not isinstance(url, str) or not url.strip():
        raise GatewayError("invalid_request", "Request body must contain a `url` string, or send the audio bytes",
                           "url")
    url = url.strip()
    settings = app[SETTINGS]
    if not settings.fetch.allows(url):
        raise GatewayError(
            "invalid_request",
            "This gateway does not fetch remote audio from that URL: send the audio bytes in the request body "
            "(or have the operator allow the URL's prefix in `fetch.allow`)",
            "url",
        )
    limit = settings.limits.max_body_bytes
    session = app[GRADIUM].session
    total = 0
    try:
        async with session.get(url, allow_redirects=False,
                               timeout=aiohttp.ClientTimeout(total=settings.fetch.timeout_s)) as resp:
            if resp.status != 200:
                raise GatewayError("invalid_request", f"Could not fetch the remote audio: HTTP {resp.status}", "url")
            async for chunk in resp.content.iter_chunked(CHUNK):
                total += len(chunk)
                if total > limit:
                    raise GatewayError("payload_too_large", "The remote audio is larger than this gateway accepts")
                yield chunk
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
        raise GatewayError("invalid_request", f"Could not fetch the remote audio: {type(exc).__name__}",
                           "url") from None
