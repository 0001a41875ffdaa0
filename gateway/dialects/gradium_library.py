"""The caller's own objects in Gradium (custom voices, pronunciation dictionaries) over its REST API.

- `call`: one Gradium REST call; its errors become gateway error kinds (409 duplicate -> conflict,
  409/402 quota or credits -> quota_exceeded, 404 -> not_found, 422 -> invalid_request).
- Tenancy: in managed mode several tenants may share one Gradium key, so what a tenant creates
  carries its tenant marker (`custom_ids.tenant_marker`) at the end of its Gradium name, and lists
  show a tenant only its own; the marker never reaches the client. Ids are `custom_ids`-sealed.
"""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from gateway import custom_ids
from gateway.dialects.common import GRADIUM
from gateway.errors import GatewayError
from gateway.upstream.errors import parse_rest_error

_MARK = re.compile(r"\s\[gw:([0-9a-f]{10})\]$")


def _kind_for(status: int, message: str) -> str | None:
    low = message.lower()
    if status == 402 or (status == 409 and any(w in low for w in ("limit", "quota", "credit"))):
        return "quota_exceeded"
    if status == 409 and ("not ready" in low or "pending" in low):
        return "invalid_request"
    return {409: "conflict", 404: "not_found", 422: "invalid_request", 400: "invalid_request",
            413: "payload_too_large"}.get(status)


async def call(request: web.Request, method: str, path: str, key: str, *, json: Any = None,
               data: aiohttp.FormData | None = None, params: dict[str, str] | None = None) -> Any:
    """One Gradium REST call -> its JSON (None for an empty body)."""
    client = request.app[GRADIUM]
    try:
        async with client.session.request(
            method, client.base_url + path, headers=client._headers(key), json=json, data=data, params=params,
            timeout=aiohttp.ClientTimeout(total=60, connect=client.connect_timeout.connect),
        ) as resp:
            body = await resp.read()
            if resp.status >= 300:
                err = parse_rest_error(resp.status, body)
                kind = _kind_for(resp.status, err.message) if err.kind in ("invalid_request", "not_found",
                                                                             "upstream_error") else None
                raise GatewayError(kind, err.message, upstream_code=resp.status) if kind else err
            return orjson.loads(body) if body.strip() else None
    except (TimeoutError, aiohttp.ClientError, OSError, orjson.JSONDecodeError):
        raise GatewayError("upstream_unavailable", "cannot reach Gradium") from None


def marked(name: str) -> str:
    """The Gradium name for an object the caller creates (its tenant's marker appended)."""
    mark = custom_ids.tenant_marker()
    return f"{name} [gw:{mark}]" if mark else name


def unmarked(name: str) -> tuple[str, str | None]:
    m = _MARK.search(name)
    return (name[: m.start()], m.group(1)) if m else (name, None)


def is_mine(gradium_name: str) -> bool:
    """Whether the caller may see an object of its Gradium org: in managed mode only its tenant's."""
    mark = custom_ids.tenant_marker()
    return mark is None or unmarked(gradium_name)[1] == mark


# -- voices -------------------------------------------------------------------------------------


def _tags(tags: Any) -> dict[str, str]:
    return {str(t.get("category")): str(t["value"]) for t in tags if isinstance(t, dict) and t.get("value")
            and t.get("category")} if isinstance(tags, list) else {}


def voice_item(voice: dict[str, Any], style: str) -> dict[str, Any]:
    """A Gradium custom voice -> the catalogue item a client sees (sealed id, unmarked name)."""
    uid = str(voice["uid"])
    tags = _tags(voice.get("tags"))
    locale = str(voice.get("language") or tags.get("language") or "")
    return {
        "id": custom_ids.encode("voice", uid, style),
        "gradium": uid,
        "name": unmarked(str(voice.get("name") or uid))[0],
        "description": voice.get("description") or None,
        "language": locale.split("-")[0].lower() or None,
        "locale": locale or None,
        "gender": tags.get("gender"),
        "accent": tags.get("accent"),
        "labels": {k[6:]: v for k, v in tags.items() if k.startswith("label:")},
        "owned": True,
        "generated": tags.get("origin") == "generated",  # kept from a voice design preview
        "source": "gradium",
    }


async def own_voices(request: web.Request, key: str, style: str) -> list[dict[str, Any]]:
    data = await call(request, "GET", "voices/", key, params={"include_catalog": "false", "limit": "0"})
    return [voice_item(v, style) for v in data if isinstance(v, dict) and v.get("uid") and not v.get("is_catalog")
            and is_mine(str(v.get("name") or ""))] if isinstance(data, list) else []


async def own_voice(request: web.Request, key: str, public_id: Any, style: str, param: str,
                    miss: str = "voice_not_found") -> dict[str, Any]:
    """The caller's voice behind `public_id`, or the error kind `miss`."""
    missing = GatewayError(miss, f"A voice with the voice_id {public_id} was not found.", param)
    uid = custom_ids.decode("voice", str(public_id or ""))
    if uid is None:
        raise missing
    try:
        voice = await call(request, "GET", f"voices/{uid}", key)
    except GatewayError as err:
        raise (missing if err.kind == "not_found" else err) from None
    if not isinstance(voice, dict) or voice.get("is_catalog") or not is_mine(str(voice.get("name") or "")):
        raise missing
    return {**voice, "uid": uid} | {"item": voice_item({**voice, "uid": uid}, style)}


async def check_name_free(request: web.Request, key: str, name: str, style: str, but: str | None = None) -> None:
    """Gradium replaces a voice of the same name (`was_updated`): refuse a duplicate instead."""
    folded = name.strip().casefold()
    if any(v["name"].strip().casefold() == folded and v["gradium"] != but
           for v in await own_voices(request, key, style)):
        raise GatewayError("conflict", f"A voice named {name!r} already exists", "name")


async def set_tags(request: web.Request, key: str, uid: str, existing: Any, fields: dict[str, Any]) -> None:
    """Store labels (and gender/accent/language) as Gradium voice tags, merged over `existing`."""
    tags = _tags(existing)
    for k, v in fields.items():
        if v is not None:
            tags[k] = str(v)
    await call(request, "PUT", f"voices/{uid}", key,
               json={"tags": [{"category": k, "value": v} for k, v in tags.items()]})
