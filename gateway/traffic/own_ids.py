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

import orjson
from aiohttp import web

from gateway import custom_ids
from gateway.auth import Authenticator, Credential
from gateway.mapping.compiler import CompiledMapping, CompiledRoute
from gateway.mapping.params import RequestData
from gateway.traffic.identity import is_token

Source = tuple[str, str]  # (param source such as `path.voice_id` or `body.voice.id`, custom id kind)
_SOURCES: dict[tuple[str, str], tuple[Source, ...]] = {}


def sources(mapping: CompiledMapping, route: CompiledRoute) -> tuple[Source, ...]:
    key = (mapping.provider, route.name)
    if key not in _SOURCES:
        found: list[Source] = []
        for spec in route.spec.params.values():
            table = mapping.tables.get(spec.table) if spec.table else None
            if table is None or table.custom_ids is None:
                continue
            for src in [spec.source] if isinstance(spec.source, str) else list(spec.source or []):
                if src.startswith(("path.", "query.", "body.")):
                    found.append((src, table.custom_ids))
        _SOURCES[key] = tuple(found)
    return _SOURCES[key]


def ids_caller(auth: Authenticator, cred: Credential | None, tenant: str | None) -> custom_ids.Caller | None:
    """The identity the caller's ids were sealed for (see `Authenticator._caller`), without using up a
    single-use token; None when it cannot be known here (a forward-mode token)."""
    if cred is None or cred.malformed:
        return None
    if auth.settings.mode == "forward":
        return None if is_token(cred) else custom_ids.Caller(cred.value)
    if tenant is None:
        return None
    with contextlib.suppress(Exception):
        return custom_ids.Caller(auth.tenant_key(tenant), tenant)
    return None


async def names_own_object(request: web.Request, route_sources: tuple[Source, ...],
                           caller: custom_ids.Caller | None) -> bool:
    if not route_sources or caller is None:
        return False
    body: Any = None
    if any(src.startswith("body.") for src, _ in route_sources) and request.content_type == "application/json":
        with contextlib.suppress(Exception):
            body = orjson.loads(await request.read())  # cached by aiohttp for the handler
    data = RequestData(path=request.match_info, query=request.query, body=body)
    for src, kind in route_sources:
        value = data.get(src)
        if isinstance(value, str) and custom_ids.decode(kind, value, caller=caller) is not None:
            return True
    return False
