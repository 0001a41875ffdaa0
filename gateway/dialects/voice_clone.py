"""Builtins for the caller's cloned voices: create from audio samples, edit, delete (over Gradium's
`POST/PUT/DELETE /api/voices/`).

Samples: Gradium clones from one clip, so of several uploaded files the largest recognised audio
file is used (more speech makes a better clone); empty or unreadable files are refused, as are files
over `max_file_bytes`. The upload itself is parsed by aiohttp, which spools file parts to disk and
stops at `limits.max_body_bytes`.

Common options: `id_style` (`b64` or `uuid`: how the voice id looks, see gateway/custom_ids.py).
Templates: `created` / `item` (`$voice`: the catalogue item: id, name, description, language,
labels...), `deleted` (`$voice_id`).
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
from aiohttp import web

from gateway.audio.sniff import sniff_format
from gateway.auth import find_credential
from gateway.custom_ids import encode
from gateway.dialects.builtins import builtin
from gateway.dialects.common import AUTH, RequestContext, render_event, request_id_headers
from gateway.dialects.gradium_library import call, check_name_free, marked, own_voice, set_tags
from gateway.errors import GatewayError
from gateway.mapping.params import RequestData

MAX_FILE_BYTES = 10 * 1024 * 1024
_GRADIUM_INPUT = {"wav": "wav", "ogg": "opus", "webm": "webm", "mp4": "m4a"}


def reply(ctx: RequestContext, params: dict[str, Any], event: str, fields: dict[str, Any],
          status: int = 200) -> web.Response:
    body = render_event(ctx.route, ctx.scope(params), event, fields)
    if body is None:
        raise GatewayError("internal", f"route {ctx.route.name} needs a `{event}` template")
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json",
                        headers=request_id_headers(ctx))


async def caller_key(request: web.Request, ctx: RequestContext, req: RequestData) -> str:
    """The caller's Gradium key (its identity for `custom_ids` is noted as a side effect)."""
    return await request.app[AUTH].authorize(find_credential(ctx.mapping.credentials, req), ctx.mapping.provider,
                                             ctx.route.name)


def _read(part: Any, field: str, limit: int) -> tuple[str, bytes]:
    if isinstance(part, str):
        raise GatewayError("invalid_request", f"{field}: expected a file upload, got a text field", field)
    name = getattr(part, "filename", None) or field
    handle = part.file
    handle.seek(0, 2)
    size = handle.tell()
    if size > limit:
        raise GatewayError("payload_too_large", f"{name} is larger than {limit // (1024 * 1024)} MB", field)
    handle.seek(0)
    return name, handle.read()


def best_sample(req: RequestData, field: str, limit: int) -> tuple[str, bytes, str]:
    """(filename, bytes, Gradium input_format) of the sample to clone from."""
    parts = req.form.getall(field, []) if hasattr(req.form, "getall") else []
    if not parts:
        raise GatewayError("invalid_request", f"{field}: at least one audio file is required", field)
    best: tuple[str, bytes, str] | None = None
    for part in parts:
        name, data = _read(part, field, limit)
        if not data:
            raise GatewayError("invalid_audio", f"{name} is empty", field)
        fmt = sniff_format(data[:65536])
        if fmt is None:
            raise GatewayError("invalid_audio", f"{name} is not an audio file this service can read", field)
        kind = _GRADIUM_INPUT.get(fmt.container, fmt.encoding)
        if best is None or len(data) > len(best[1]):
            best = (name, data, kind)
    assert best is not None
    return best


def _labels(value: Any) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise GatewayError("invalid_request", "labels must be a JSON object", "labels") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise GatewayError("invalid_request", "labels must be an object", "labels")
    return value


def _tag_fields(params: dict[str, Any]) -> dict[str, Any]:
    labels = _labels(params.get("labels"))
    fields: dict[str, Any] = {f"label:{k}": v for k, v in labels.items() if isinstance(v, str | int | float)}
    for tag in ("gender", "accent"):
        value = params.get(tag) or labels.get(tag)
        if value:
            fields[tag] = value
    return fields


@builtin("voice_clone")
async def voice_clone(request: web.Request, ctx: RequestContext, req: RequestData) -> web.StreamResponse:
    """Options: `files` (the form field holding the samples), `max_file_bytes`, `status` (of the
    answer, default 200). Params: `name` (required), `description`, `language`, `labels`, `gender`,
    `accent`. Answers with the `created` template."""
    opts = ctx.route.spec.builtin_options
    style = str(opts.get("id_style", "b64"))
    key = await caller_key(request, ctx, req)
    params = ctx.route.read_params(req)
    name = str(params.get("name") or "").strip()
    if not name:
        raise GatewayError("invalid_request", "name is required", "name")
    filename, data, input_format = best_sample(req, str(opts.get("files", "files")),
                                               int(opts.get("max_file_bytes", MAX_FILE_BYTES)))
    await check_name_free(request, key, name, style)
    labels = _labels(params.get("labels"))
    language = str(params.get("language") or labels.get("language") or "en")
    form = aiohttp.FormData()
    form.add_field("audio_file", data, filename=filename, content_type=f"audio/{input_format}")
    form.add_field("name", marked(name))
    form.add_field("language", language)
    form.add_field("input_format", input_format)
    if params.get("description"):
        form.add_field("description", str(params["description"]))
    out = await call(request, "POST", "voices/", key, data=form)
    uid = out.get("uid") if isinstance(out, dict) else None
    if not uid:
        reason = out.get("error") if isinstance(out, dict) else None
        raise GatewayError("invalid_audio", f"Gradium could not clone this voice: {reason or 'no voice created'}")
    tags = _tag_fields(params)
    if tags:
        await set_tags(request, key, uid, [], tags)
    voice = await own_voice(request, key, encode("voice", uid, style), style, "voice_id")
    return reply(ctx, params, "created", {"voice": voice["item"]}, int(opts.get("status", 200)))


@builtin("voice_edit")
async def voice_edit(request: web.Request, ctx: RequestContext, req: RequestData) -> web.StreamResponse:
    """Params: `voice_id` (required), `name`, `description`, `labels`, `gender`, `accent`, `language`.
    Option `files`: the form field of new samples, which replace the voice's clip (Gradium's create with
    the voice's own name updates it in place, `was_updated`); `miss`: the error kind for an unknown id
    (default voice_not_found). Answers with the `item` template."""
    opts = ctx.route.spec.builtin_options
    style = str(opts.get("id_style", "b64"))
    key = await caller_key(request, ctx, req)
    params = ctx.route.read_params(req)
    files = opts.get("files")
    new_sample = None
    if files and hasattr(req.form, "getall") and req.form.getall(str(files), []):
        new_sample = best_sample(req, str(files), int(opts.get("max_file_bytes", MAX_FILE_BYTES)))
    miss = str(opts.get("miss", "voice_not_found"))
    voice = await own_voice(request, key, params.get("voice_id"), style, "voice_id", miss)
    uid = voice["uid"]
    if new_sample is not None:
        await _replace_sample(request, key, voice, new_sample)
    changes: dict[str, Any] = {}
    if params.get("name") and str(params["name"]).strip() != voice["item"]["name"]:
        await check_name_free(request, key, str(params["name"]), style, but=uid)
        changes["name"] = marked(str(params["name"]).strip())
    for field in ("description", "language"):
        if params.get(field) is not None:
            changes[field] = str(params[field])
    if changes:
        await call(request, "PUT", f"voices/{uid}", key, json=changes)
    tags = _tag_fields(params)
    if tags:
        await set_tags(request, key, uid, voice.get("tags"), tags)
    fresh = await own_voice(request, key, params.get("voice_id"), style, "voice_id")
    return reply(ctx, params, "item", {"voice": fresh["item"], "item": fresh["item"]})


async def _replace_sample(request: web.Request, key: str, voice: dict[str, Any],
                          sample: tuple[str, bytes, str]) -> None:
    filename, data, input_format = sample
    form = aiohttp.FormData()
    form.add_field("audio_file", data, filename=filename, content_type=f"audio/{input_format}")
    form.add_field("name", str(voice.get("name")))  # its Gradium name, tenant mark included
    form.add_field("language", str(voice.get("language") or "en"))
    form.add_field("input_format", input_format)
    out = await call(request, "POST", "voices/", key, data=form)
    got = out.get("uid") if isinstance(out, dict) else None
    if got != voice["uid"]:
        if got:  # Gradium made a second voice instead: undo it, the client's id must keep its voice
            await call(request, "DELETE", f"voices/{got}", key)
        raise GatewayError("upstream_error", "Gradium could not replace this voice's sample; create a new voice")


@builtin("voice_delete")
async def voice_delete(request: web.Request, ctx: RequestContext, req: RequestData) -> web.StreamResponse:
    """Params: `voice_id`. Answers with the `deleted` template (or an empty 204 without one)."""
    opts = ctx.route.spec.builtin_options
    style = str(opts.get("id_style", "b64"))
    key = await caller_key(request, ctx, req)
    params = ctx.route.read_params(req)
    voice = await own_voice(request, key, params.get("voice_id"), style, "voice_id",
                            str(opts.get("miss", "voice_not_found")))
    await call(request, "DELETE", f"voices/{voice['uid']}", key)
    if "deleted" not in ctx.route.render:
        return web.Response(status=204, headers=request_id_headers(ctx))
    return reply(ctx, params, "deleted", {"voice_id": params.get("voice_id")})
