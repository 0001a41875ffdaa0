"""The request of a REST shadow leg (specs/traffic.md §4.2, §4.5): the client's request as the primary got
it, minus its credentials, side effects (`shadow.strip`) and the gateway's own parameters, plus the
shadow key and `X-Gateway-Pair-Id`; sent once, its answer recorded on the leg and never shown to anyone."""

from __future__ import annotations

import ssl

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from gateway.mapping.compiler import CompiledMapping
from gateway.traffic.legacy import CredentialPositions
from gateway.traffic.legs import LegStats
from gateway.upstream.passthrough import strip_query, upstream_headers


def leg_query(mapping: CompiledMapping, raw_query: str, side: str) -> str:
    """The query a leg sends: no query credential, no `gw_session`, no side effect (`callback`); towards
    the vendor the shadow's own tag (`tag=gradium-gateway-shadow`) replaces the client's."""
    assert mapping.legacy is not None
    facts = mapping.legacy.shadow
    creds = [s.source.partition(".")[2] for s in mapping.credentials if s.source.startswith("query.")]
    query = strip_query(raw_query, [*creds, "gw_session", *facts.strip_query, *facts.replace_query])
    if side == "legacy":
        extra = "&".join(f"{k}={v}" for k, v in facts.replace_query.items())
        query = "&".join(q for q in (query, extra) if q)
    return query


def leg_headers(mapping: CompiledMapping, client: CIMultiDict[str], key: str, pair_id: str) -> CIMultiDict[str]:
    """The client's headers (minus hop-by-hop, credentials and `X-Gateway-*`) with the shadow key where the
    dialect carries a key: a Gradium leg's forward-mode handler reads it there, the vendor wants it there."""
    assert mapping.legacy is not None
    facts = mapping.legacy
    headers = upstream_headers(client.items(), CredentialPositions.of(mapping).headers)
    headers[facts.auth_header] = facts.auth_value.replace("$key", key)
    headers["X-Gateway-Pair-Id"] = pair_id
    return headers


async def send(session: aiohttp.ClientSession, method: str, url: str, headers: CIMultiDict[str], body: bytes,
               stats: LegStats, *, ssl_opt: ssl.SSLContext | bool, total_s: float, connect_s: float) -> int:
    """The leg's one request; its answer goes to `stats` (times from the leg's own send). Returns the status."""
    timeout = aiohttp.ClientTimeout(total=total_s, connect=connect_s)
    stats.sent()
    async with session.request(method, URL(url, encoded=True), data=body, headers=headers, ssl=ssl_opt,
                               timeout=timeout, allow_redirects=False) as r:
        stats.upstream_request_id = (r.headers.get("request-id") or r.headers.get("dg-request-id")
                                     or r.headers.get("X-Request-Id"))
        async for chunk in r.content.iter_any():
            stats.out(chunk)
        stats.close_code = r.status
    return r.status
