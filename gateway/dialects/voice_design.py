"""Voice design over Gradium's voice generator: previews from a description, then keep one as a voice.

- `voice_design`: `POST /api/voice-generator/generate` (the description is the prompt) makes drafts;
  each is spoken once over `POST /api/post/speech/tts` (drafts are usable at once) and returned as a
  preview: its audio in the client's format and a `generated_voice_id` (the draft's id, sealed for the
  caller by gateway/custom_ids.py). Params: `description` (required), `text` (else option
  `preview_text`), `language` (default en), `output_format` (an audio format). Option `samples`
  (drafts per call, 1-5, default 3). Template `previews` (`$previews`: audio_b64, generated_voice_id,
  media_type, duration_secs, language; `$text`).
- `voice_keep`: `POST /api/voices/from-embedding` makes the draft a voice of the caller's (tagged
  `origin: generated`). Params: `generated_voice_id`, `name`, `description`, `labels`. Template `item`
  (`$voice` / `$item`: the catalogue item).
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import aiohttp
from aiohttp import web

from gateway import custom_ids
from gateway.audio.formats import GRADIUM_OUTPUT_FORMATS, nearest_gradium_output
from gateway.audio.transcode import AudioError, make_transcoder
from gateway.dialects.builtins import builtin
from gateway.dialects.common import GRADIUM, RequestContext
from gateway.dialects.gradium_library import call, check_name_free, marked, own_voice, set_tags
from gateway.dialects.voice_clone import _tag_fields, caller_key, reply
from gateway.errors import GatewayError
from gateway.mapping.compiler import audio_format
from gateway.mapping.params import RequestData
from gateway.upstream.errors import parse_rest_error

READY_WAIT_S = 60.0  # Gradium computes drafts asynchronously: how long previews wait for them
READY_POLL_S = 0.5
PREVIEW_TEXT = "Hello! This is a preview of a voice designed from your description. How does it sound?"
MAX_PREVIEW_BYTES = 20 * 1024 * 1024


async def _speak(request: web.Request, key: str, voice_id: str, text: str, gradium_format: str) -> bytes:
    client = request.app[GRADIUM]
    body = {"text": text, "voice_id": voice_id, "output_format": gradium_format, "only_audio": True}
    try:
        async with client.session.post(client.base_url + "post/speech/tts", json=body,
                                       headers=client._headers(key),
                                       timeout=aiohttp.ClientTimeout(total=60)) as resp:
            if resp.status >= 300:
                raise parse_rest_error(resp.status, await resp.read())
            data = bytearray()
            async for chunk in resp.content.iter_chunked(65536):
                data += chunk
                if len(data) > MAX_PREVIEW_BYTES:
                    raise GatewayError("upstream_error", "Gradium's preview was too long")
    except (TimeoutError, aiohttp.ClientError, OSError):
        raise GatewayError("upstream_unavailable", "cannot reach Gradium") from None
    return bytes(data)


async def _wait_ready(request: web.Request, key: str, drafts: list[dict[str, Any]]) -> None:
    """Poll `GET /api/voice-generator/embeddings` until every draft is ready (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_WAIT_S
    for draft in drafts:
        while not draft.get("ready", True):
            if loop.time() >= deadline:
                raise GatewayError("upstream_unavailable", "Gradium's voice generator did not finish in time")
            await asyncio.sleep(READY_POLL_S)
            got = await call(request, "GET", "voice-generator/embeddings", key,
                             params={"embedding_id": str(draft["embedding_id"])})
            entries = (got or {}).get("embeddings") if isinstance(got, dict) else None
            if entries and isinstance(entries[0], dict):
                draft.update(entries[0])


@builtin("voice_design")
async def voice_design(request: web.Request, ctx: RequestContext, req: RequestData) -> web.StreamResponse:
    opts = ctx.route.spec.builtin_options
    key = await caller_key(request, ctx, req)
    p = ctx.route.read_params(req)
    prompt = str(p.get("description") or "").strip()
    if not prompt:
        raise GatewayError("invalid_request", "voice_description is required", "voice_description")
    text = str(p.get("text") or opts.get("preview_text") or PREVIEW_TEXT)
    language = str(p.get("language") or "en").split("-")[0].lower()
    want = audio_format(p.get("output_format"), "output_format")
    name = nearest_gradium_output(want)
    src = GRADIUM_OUTPUT_FORMATS[name]
    out = await call(request, "POST", "voice-generator/generate", key,
                     json={"prompt": prompt, "language": language, "n_samples": int(opts.get("samples", 3))})
    drafts = [e for e in (out or {}).get("embeddings") or [] if isinstance(e, dict) and e.get("embedding_id")]
    if not drafts:
        raise GatewayError("upstream_error", "Gradium's voice generator returned no voices")
    await _wait_ready(request, key, drafts)
    spoken = await asyncio.gather(*(_speak(request, key, str(d["embedding_id"]), text, name) for d in drafts))
    previews = []
    for draft, raw in zip(drafts, spoken, strict=True):
        try:
            tc = make_transcoder(src, want)
            audio = tc.feed(raw) + tc.flush()
        except AudioError as exc:
            raise GatewayError("unsupported_format", str(exc)) from None
        seconds = len(raw) / (src.sample_rate * 2) if src.is_raw_pcm else 0.0
        previews.append({
            "audio_b64": base64.b64encode(audio).decode(),
            "generated_voice_id": custom_ids.encode("draft", str(draft["embedding_id"])),
            "media_type": want.mime,
            "duration_secs": round(seconds, 3),
            "language": draft.get("language") or language,
        })
    return reply(ctx, p, "previews", {"previews": previews, "text": text})


@builtin("voice_keep")
async def voice_keep(request: web.Request, ctx: RequestContext, req: RequestData) -> web.StreamResponse:
    opts = ctx.route.spec.builtin_options
    style = str(opts.get("id_style", "b64"))
    key = await caller_key(request, ctx, req)
    p = ctx.route.read_params(req)
    public = str(p.get("generated_voice_id") or "")
    draft = custom_ids.decode("draft", public)
    if draft is None:
        raise GatewayError("voice_not_found", f"generated_voice_id {public!r} is not a preview of yours",
                           "generated_voice_id")
    name = str(p.get("name") or "").strip()
    if not name:
        raise GatewayError("invalid_request", "voice_name is required", "voice_name")
    await check_name_free(request, key, name, style)
    body: dict[str, Any] = {"voxium_embedding_id": draft, "name": marked(name)}
    if p.get("description"):
        body["description"] = str(p["description"])
    try:
        voice = await call(request, "POST", "voices/from-embedding", key, json=body)
    except GatewayError as err:
        if err.kind == "not_found":
            raise GatewayError("voice_not_found", "That preview has expired; design the voice again",
                               "generated_voice_id") from None
        raise
    uid = str(voice.get("uid")) if isinstance(voice, dict) and voice.get("uid") else None
    if uid is None:
        raise GatewayError("upstream_error", "Gradium did not return the new voice")
    await set_tags(request, key, uid, voice.get("tags"), {"origin": "generated", **_tag_fields(p)})
    kept = await own_voice(request, key, custom_ids.encode("voice", uid, style), style, "generated_voice_id")
    return reply(ctx, p, "item", {"voice": kept["item"], "item": kept["item"]}, int(opts.get("status", 200)))
