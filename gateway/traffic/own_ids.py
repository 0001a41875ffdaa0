"""A request naming the caller's own Gradium object (a cloned or designed voice, a pronunciation
dictionary, by the sealed id this gateway gave it) can only be served by Gradium: the legacy vendor has
never heard of that id. The split then pins the unit to Gradium, like a continuation of Gradium's own
request ids (`stitching`), whatever the weights say.

Which params may hold such ids is mapping data (a param whose table has `custom_ids:`); only the
sources the router can see before deciding count: the path, the query, and a JSON body.
"""

from __future__ import annotations

import contextlib
from typing import Any

from aiohttp import web

from gateway import custom_ids
from gateway.auth import Authenticator, Credential
from gateway.errors import GatewayError
from gateway.mapping.compiler import CompiledMapping, CompiledRoute
from gateway.mapping.params import RequestData
from gateway.traffic.identity import is_token

Source = tuple[str, str]  # (param source such as `path.voice_id` or `body.voice.id`, custom id kind)


def sources(mapping: CompiledMapping, route: CompiledRoute) -> tuple[Source, ...]:
    """Where `route` may name the caller's own objects (read once per route, when the split wraps it)."""
    found: list[Source] = []
    for spec in route.spec.params.values():
        table = mapping.tables.get(spec.table) if spec.table else None
        if table is None or table.custom_ids is None:
            continue
        for src in spec.sources:
            if src.startswith(("path.", "query.", "body.")):
                found.append((src, table.custom_ids))
    return tuple(found)


def body_fields(route_sources: tuple[Source, ...]) -> tuple[bytes, ...]:
    """The top-level JSON fields the body sources read, as bytes: a body naming none of them (nor escaping
    any key) cannot name an own object, and is not parsed for it."""
    return tuple(sorted({src.split(".")[1].encode() for src, _ in route_sources if src.startswith("body.")}))


def may_name(raw: bytes, fields: tuple[bytes, ...]) -> bool:
    # `find`, not `in`: CPython's `bytes in bytes` first tries the needle as an int and builds (then drops)
    # a TypeError, a few thousand instructions per test on a request's critical path
    return raw.find(b"\\u") >= 0 or any(raw.find(f) >= 0 for f in fields)


def ids_caller(auth: Authenticator, cred: Credential | None, tenant: str | None) -> custom_ids.Caller | None:
    """The identity the caller's ids were sealed for (see `Authenticator._caller`), without using up a
    single-use token; None when it cannot be known here (a forward-mode token)."""
    if cred is None or cred.malformed:
        return None
    if auth.settings.mode == "forward":
        return None if is_token(cred) else custom_ids.Caller(cred.value)
    if tenant is None:
        return None
    with contextlib.suppress(GatewayError, KeyError):  # no Gradium key for the tenant: it has no own ids
        return custom_ids.Caller(auth.tenant_key(tenant), tenant)
    return None


def names_own_object(request: web.Request, route_sources: tuple[Source, ...], body: Any,
                     caller: custom_ids.Caller | None) -> bool:
    """`body`: the request's JSON body when a source reads it (else None)."""
    if not route_sources or caller is None:
        return False
    data: RequestData | None = None
    for src, kind in route_sources:
        where, _, name = src.partition(".")
        if where == "path":  # read directly: most routes name objects in the path only
            value: Any = request.match_info.get(name)
        elif where == "query":
            value = request.query.get(name)
        elif body is None:
            continue
        else:
            data = data or RequestData(body=body)
            value = data.get(src)
        if isinstance(value, str) and custom_ids.decode(kind, value, caller=caller) is not None:
            return True
    return False
