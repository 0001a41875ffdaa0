"""`fallthrough: legacy` per tenant (specs/traffic.md §2, end): a path under a provider's prefix that no
mapping route serves (cloning, dubbing, agents ...) is relayed to that vendor like any passthrough unit:
the client's credential removed, the tenant's vendor key injected, everything else as it was sent.
Off by default: such a path keeps its provider-shaped 404/405.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.web_urldispatcher import MatchInfoError  # not in aiohttp.web: an unrouted request's match info

from gateway.auth import find_credential
from gateway.dialects.common import AUTH, MAPPINGS
from gateway.mapping.params import RequestData
from gateway.traffic.identity import identify
from gateway.traffic.legacy import LegacyLeg
from gateway.traffic.policy import Decision
from gateway.traffic.router import TRAFFIC, serve_legacy

REASON = "fallthrough"


async def serve(request: web.Request) -> web.StreamResponse | None:
    """The vendor's answer for an unrouted path of a tenant that opted in; None: not ours to relay."""
    if not isinstance(request.match_info, MatchInfoError):
        return None  # a route exists and answered (its own 404s are the dialect's)
    traffic = request.app[TRAFFIC]
    tenants = traffic.settings.auth.tenants
    if not any(t.fallthrough for t in tenants.values()):
        return None
    provider = request.path.split("/", 2)[1] if request.path.count("/") >= 2 else ""
    mapping = request.app[MAPPINGS].get(provider)
    if mapping is None or mapping.legacy is None:
        return None  # only paths under a provider's own prefix
    cred = find_credential(mapping.credentials, RequestData(query=request.query, header=request.headers))
    caller = identify(request.app[AUTH], cred)
    tenant = tenants.get(caller.tenant) if caller.tenant else None
    if tenant is None or tenant.fallthrough != "legacy":
        return None
    ws = request.headers.get("Upgrade", "").lower() == "websocket"
    leg = LegacyLeg(mapping, None, traffic.settings.traffic.session_query, ws=ws)
    traffic.metrics.assigned(provider, leg.name, "legacy", REASON)
    return await serve_legacy(leg, request, traffic, cred, Decision("legacy", REASON), None)
