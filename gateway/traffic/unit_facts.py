"""What the split reads from a request before deciding (specs/traffic.md §3): sticky keys, continuation ids
(stitching), the caller's own object ids, and a shadow's body and keys.

`RouteFacts` is worked out once per route, when the split wraps it: which of these checks can apply to the
route at all (a route no JSON body can reach never looks for continuation ids in one; a route whose params
hold no own ids never builds the caller's id identity), so a request pays only for the checks that can
change its decision.
"""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
from aiohttp import web

from gateway.auth import Authenticator, Credential
from gateway.config import Settings
from gateway.mapping.compiler import CompiledMapping, CompiledRoute
from gateway.traffic import own_ids
from gateway.traffic.identity import Caller
from gateway.traffic.settings import Target, TrafficSettings
from gateway.traffic.stitching import Stitching
from gateway.traffic.tee import BodyTee

_JSON_BODY = "gateway.traffic.json_body"  # request key: the JSON body, parsed once (`json_body`)
TOKEN_BUILTINS = frozenset({"mint_token", "grant_token"})


def route_class(route: CompiledRoute) -> str:
    if route.spec.gradium is not None:
        return "speech"
    return "token" if route.spec.builtin in TOKEN_BUILTINS else "catalogue"


class RouteFacts:
    """Per route of a mapping: its class, kind and transport, and the sources its requests may carry
    continuation or own-object ids in."""

    __slots__ = ("cls", "id_body_fields", "id_header", "id_sources", "kind", "native", "posts", "speech",
                 "stitch_field", "stitch_name", "transport")

    def __init__(self, mapping: CompiledMapping, route: CompiledRoute) -> None:
        assert mapping.legacy is not None
        self.cls = route_class(route)
        self.speech = self.cls == "speech"
        self.kind = "tts" if route.spec.gradium is not None and route.spec.gradium.kind == "tts" else "stt"
        self.transport = "ws" if route.is_ws else "rest"
        self.id_header = mapping.legacy.response_id_header
        self.id_sources = own_ids.sources(mapping, route)
        self.id_body_fields = own_ids.body_fields(self.id_sources)
        # only a POST can carry a JSON body (a socket's upgrade is a GET): the others never look for one
        self.posts = route.method == "POST" and not route.is_ws
        field = mapping.legacy.stitching
        self.stitch_name = field.partition(".")[2] if field and self.posts else ""
        self.stitch_field = self.stitch_name.encode()
        # (kind, name, pairs) per native sticky source, split once
        self.native = tuple((*n.source.partition(".")[::2], n.pairs) for n in mapping.legacy.native_sticky)


def is_json_post(request: web.Request, facts: RouteFacts) -> bool:
    """Whether the request has a body `json_body` parses (the content type is parsed once, here)."""
    if not facts.posts or request.method != "POST":
        return False
    # the header as most clients send it says it without aiohttp's parse of the content type
    return request.headers.get("Content-Type") == "application/json" or request.content_type == "application/json"


def sticky_keys(request: web.Request, facts: RouteFacts, t: TrafficSettings, caller: Caller) -> dict[str, str]:
    keys: dict[str, str] = {}
    headers = request.headers
    for h in t.session_headers:
        if v := headers.get(h):
            keys["header"] = v
            break
    else:
        if v := request.query.get(t.session_query):
            keys["header"] = v
    for kind, name, pairs in facts.native:
        values = request.query.getall(name, []) if kind == "query" else [headers.get(name, "")]
        if pairs:
            prefix = t.native_extra_key + ":"
            values = [v[len(prefix):] for v in values if v.startswith(prefix)]
        if value := next((v for v in values if v), None):
            keys["native"] = value
            break
    if caller.identity:
        keys["credential"] = caller.identity
    return keys


async def own_object(request: web.Request, facts: RouteFacts, auth: Authenticator, cred: Credential | None,
                     caller: Caller, json_post: bool) -> bool:
    if not facts.id_sources:
        return False
    ids_caller = own_ids.ids_caller(auth, cred, caller.tenant)
    if ids_caller is None:
        return False
    body = None
    if facts.id_body_fields and json_post and await _body_may_name(request, facts.id_body_fields):
        body = await json_body(request, json_post)
    return own_ids.names_own_object(request, facts.id_sources, body, ids_caller)


async def _body_may_name(request: web.Request, fields: tuple[bytes, ...]) -> bool:
    try:
        return own_ids.may_name(await request.read(), fields)
    except Exception:
        return True  # `json_body` decides (and gives None)


async def stitched(request: web.Request, facts: RouteFacts, stitching: Stitching, json_post: bool) -> Target | None:
    """ElevenLabs `previous_request_ids`: the body is read (and cached by aiohttp for the handler)."""
    if not facts.stitch_name or not json_post:
        return None
    with contextlib.suppress(Exception):
        if (await request.read()).find(facts.stitch_field) < 0:  # `find`: see own_ids.may_name
            return None  # most requests continue nothing: no JSON parse for them
    body = await json_body(request, json_post)
    ids = body.get(facts.stitch_name) if isinstance(body, dict) else None
    if isinstance(ids, list) and ids:
        with contextlib.suppress(Exception):  # no verdict from the shared state: the split decides
            return await stitching.side_of(ids)
    return None


async def json_body(request: web.Request, json_post: bool) -> Any:
    """The request's JSON body, parsed once for every look the split takes (None: not JSON, or unreadable;
    the handler then answers it). aiohttp keeps the bytes for the handler."""
    if _JSON_BODY not in request:
        body = None
        if json_post:
            with contextlib.suppress(Exception):
                body = orjson.loads(await request.read())
        request[_JSON_BODY] = body
    return request[_JSON_BODY]


def shadow_body(request: web.Request, settings: Settings) -> bytes | BodyTee | None:
    """The body a REST shadow repeats, within `shadow.max_body_bytes`: as read already (a JSON body the
    split looked at), else a copy taken while the primary reads it (uploads stream on undisturbed)."""
    limit = settings.shadow.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        return None
    # aiohttp internal: `_read_bytes`, the body `request.read()` kept (missing: the copy is taken as it streams)
    cached: bytes | None = getattr(request, "_read_bytes", None)
    if cached is not None:
        return cached if len(cached) <= limit else None
    return BodyTee(request, limit)


def shadow_keys(settings: Settings, caller: Caller, cred: Any, provider: str) -> dict[str, str]:
    """The keys a shadow leg may use, per side: the tenant's `shadow_keys`, or with `allow_shared_keys`
    its production keys (forward mode: the caller's own credential)."""
    out: dict[str, str] = {}
    shared = settings.shadow.allow_shared_keys
    tenant = settings.auth.tenants.get(caller.tenant) if caller.tenant else None
    if tenant is not None:
        for side, name in (("gradium", "gradium"), ("legacy", provider)):
            if (k := tenant.shadow_keys.get(name)) is not None:
                out[side] = k.get_secret_value()
        if shared:
            if "gradium" not in out and tenant.gradium_api_key is not None:
                out["gradium"] = tenant.gradium_api_key.get_secret_value()
            if "legacy" not in out and (k := tenant.legacy_keys.get(provider)) is not None:
                out["legacy"] = k.get_secret_value()
    elif shared and cred is not None and settings.auth.mode == "forward":
        vendor = settings.legacy.get(provider)
        out["gradium"] = cred.value
        out["legacy"] = vendor.api_key.get_secret_value() if vendor and vendor.api_key else cred.value
    return out


def override(request: web.Request, caller: Caller) -> Target | None:
    if not caller.allow_overrides:
        return None
    value = request.headers.get("X-Gateway-Target", "").strip().lower()
    return value if value in ("gradium", "legacy") else None  # type: ignore[return-value]
