"""Voice, voice-generator and pronunciation endpoints (specs/gradium.md §7), per org (the caller's key).

CRUD errors are `{"detail": "..."}` with a status (SK); validation errors are FastAPI's 422
`{"detail": [{"loc", "msg", "type"}]}` (OAS).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gateway.audio.sniff import sniff_format
from gateway.emulator.auth import key_id
from gateway.emulator.library import EMBEDDING_ID_PREFIX, parse_rules
from gateway.emulator.rest import _detail, _json, guarded
from gateway.emulator.state import STATE, EmulatorState
from gateway.emulator.voices import CATALOG_BY_ID, Voice

RAW_INPUTS = ("pcm", "pcm_8000", "pcm_16000", "pcm_22050", "pcm_24000", "pcm_44100", "pcm_48000",
              "ulaw_8000", "mulaw_8000", "alaw_8000")
LANGUAGES = ("en", "fr", "es", "pt", "de")


def _missing(field: str, msg: str = "Field required", kind: str = "missing") -> web.Response:
    return _json({"detail": [{"loc": ["body", field], "msg": msg, "type": kind}]}, status=422)


def _org(request: web.Request) -> str:
    return key_id(request["emulator_key"])


def _int_query(request: web.Request, name: str, default: int) -> int:
    try:
        return max(0, int(request.query.get(name, default)))
    except ValueError:
        return default


async def _json_body(request: web.Request) -> dict[str, Any] | None:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


def _over_limit(state: EmulatorState, org: str) -> bool:
    return sum(v.owner == org for v in state.voices.owned(org)) >= state.settings.voice_limit


# -- voices -------------------------------------------------------------------------------------


@guarded(speech=False)
async def list_voices(request: web.Request) -> web.Response:
    include = (request.query.get("include_catalog") or "").strip().lower() in ("1", "true", "yes", "on")
    voices = request.app[STATE].voices.list(_org(request), include)
    skip, limit = _int_query(request, "skip", 0), _int_query(request, "limit", 100)
    page = voices[skip:] if limit == 0 else voices[skip : skip + limit]  # the SDK sends limit=0: no limit (PW)
    return _json([v.to_api() for v in page])


@guarded(speech=False)
async def get_voice(request: web.Request) -> web.Response:
    uid = request.match_info["uid"]
    voice = request.app[STATE].voices.find_owned(_org(request), uid) or CATALOG_BY_ID.get(uid)
    if voice is None:
        return _detail(404, "Voice not found")
    return _json(voice.to_api())


@guarded(speech=False)
async def create_voice(request: web.Request) -> web.Response:
    state: EmulatorState = request.app[STATE]
    fields: dict[str, str] = {}
    audio: bytes | None = None
    filename = "audio"
    if request.content_type.startswith("multipart/"):
        reader = await request.multipart()
        async for part in reader:
            if part.name == "audio_file":
                filename = getattr(part, "filename", None) or "audio"
                audio = await part.read()  # type: ignore[union-attr]
            elif part.name:
                fields[part.name] = await part.text()  # type: ignore[union-attr]
    if audio is None:
        return _missing("audio_file")
    if "name" not in fields:
        return _missing("name")
    if not audio:
        return _detail(400, "The audio file is empty")
    if fields.get("input_format") not in RAW_INPUTS and sniff_format(audio[:65536]) is None:
        return _detail(400, "Could not decode the audio file")
    org = _org(request)
    if _over_limit(state, org) and not any(v.name == fields["name"] for v in state.voices.owned(org)):
        return _detail(409, "Voice limit reached for this organization")
    try:
        start_s = float(fields.get("start_s", "0") or 0)
    except ValueError:
        start_s = 0.0
    voice, updated = state.voices.create(
        org, name=fields["name"], language=fields.get("language") or "en",
        description=fields.get("description", ""), start_s=start_s, filename=filename,
    )
    return _json({"uid": voice.uid, "error": None, "was_updated": updated}, status=201)


def _voice_response(voice: Voice) -> dict[str, Any]:
    return {"uid": voice.uid, "name": voice.name, "description": voice.description, "language": voice.language,
            "start_s": voice.start_s, "stop_s": None, "filename": voice.filename, "org_uid": voice.owner,
            "is_pending": False, "has_audio": True, "is_pro_clone": voice.is_pro_clone}


@guarded(speech=False)
async def update_voice(request: web.Request) -> web.Response:
    store = request.app[STATE].voices
    uid = request.match_info["uid"]
    changes = await _json_body(request)
    if changes is None:
        return _json({"detail": [{"loc": ["body"], "msg": "Input should be an object", "type": "dict_type"}]}, 422)
    existing = store.find(uid)
    if existing is not None and existing.is_catalog:
        return _detail(403, "Catalog voices cannot be modified")
    voice = store.update(_org(request), uid, changes)
    if voice is None:
        return _detail(404, "Voice not found")
    return _json(_voice_response(voice))


@guarded(speech=False)
async def delete_voice(request: web.Request) -> web.Response:
    if not request.app[STATE].voices.delete(_org(request), request.match_info["uid"]):
        return _detail(404, "Voice not found")
    # FastAPI's 204 carries this header and the SDK needs it to not raise (specs §8.6).
    return web.Response(status=204, headers={"Content-Type": "application/json"})


@guarded(speech=False)
async def voice_from_embedding(request: web.Request) -> web.Response:
    state: EmulatorState = request.app[STATE]
    body = await _json_body(request)
    if body is None or not isinstance(body.get("voxium_embedding_id"), str):
        return _missing("voxium_embedding_id")
    if not isinstance(body.get("name"), str) or not body["name"].strip():
        return _missing("name")
    org = _org(request)
    draft = state.voices.drafts.get(org, body["voxium_embedding_id"])
    if draft is None:
        return _detail(404, f"Embeddings not found for {body['voxium_embedding_id']}")
    if not draft.ready:
        return _detail(409, "The voice embedding is not ready yet")
    if any(v.owner == org and v.name == body["name"] for v in state.voices.owned(org)):
        return _detail(409, f"A voice named {body['name']!r} already exists")
    if _over_limit(state, org):
        return _detail(409, "Voice limit reached for this organization")
    voice, _ = state.voices.create(org, name=body["name"], language=draft.language,
                                   description=str(body.get("description") or draft.prompt))
    return _json(voice.to_api(), status=201)


# -- voice generator ----------------------------------------------------------------------------


@guarded(speech=False)
async def generate(request: web.Request) -> web.Response:
    state: EmulatorState = request.app[STATE]
    body = await _json_body(request)
    if body is None or not isinstance(body.get("prompt"), str) or not body["prompt"].strip():
        return _missing("prompt")
    language = body.get("language", "en")
    if language not in LANGUAGES:
        return _missing("language", f"Input should be {', '.join(LANGUAGES)}", "enum")
    n = body.get("n_samples", 1)
    if not isinstance(n, int) or not 1 <= n <= 5:
        return _missing("n_samples", "Input should be between 1 and 5", "less_than_equal")
    if state.settings.allocated_credits - state.usage.consumed_credits <= 0:
        return _detail(402, "Not enough credits to generate voices")
    drafts = state.voices.drafts.generate(_org(request), body["prompt"], language, n,
                                          state.settings.draft_ready_after_s)
    return _json({"embeddings": [d.to_api() for d in drafts]})


@guarded(speech=False)
async def get_embedding(request: web.Request) -> web.Response:
    eid = request.query.get("embedding_id", "")
    draft = request.app[STATE].voices.drafts.get(_org(request), eid) if eid.startswith(EMBEDDING_ID_PREFIX) else None
    if draft is None:
        return _detail(404, f"Embeddings not found for {eid}")
    return _json({"embeddings": [draft.to_api()]})


# -- pronunciations -----------------------------------------------------------------------------


@guarded(speech=False)
async def create_pronunciation(request: web.Request) -> web.Response:
    body = await _json_body(request)
    if body is None or not isinstance(body.get("name"), str) or not body["name"].strip():
        return _missing("name")
    rules = parse_rules(body.get("rules", []))
    if rules is None:
        return _missing("rules", "Input should be a list of {original, rewrite}", "list_type")
    d = request.app[STATE].voices.pronunciations.create(
        _org(request), body["name"], str(body.get("language") or "en"), str(body.get("description") or ""), rules)
    return _json(d.to_api(), status=201)


@guarded(speech=False)
async def list_pronunciations(request: web.Request) -> web.Response:
    found = request.app[STATE].voices.pronunciations.list(_org(request), request.query.get("language"))
    offset, limit = _int_query(request, "offset", 0), _int_query(request, "limit", 100)
    return _json({"dictionaries": [d.to_api() for d in found[offset : offset + limit]], "total": len(found)})


@guarded(speech=False)
async def get_pronunciation(request: web.Request) -> web.Response:
    d = request.app[STATE].voices.pronunciations.get(_org(request), request.match_info["uid"])
    return _json(d.to_api()) if d is not None else _detail(404, "Pronunciation dictionary not found")


@guarded(speech=False)
async def update_pronunciation(request: web.Request) -> web.Response:
    body = await _json_body(request)
    if body is None or ("rules" in body and parse_rules(body["rules"]) is None):
        return _missing("rules", "Input should be a list of {original, rewrite}", "list_type")
    d = request.app[STATE].voices.pronunciations.update(_org(request), request.match_info["uid"], body)
    return _json(d.to_api()) if d is not None else _detail(404, "Pronunciation dictionary not found")


@guarded(speech=False)
async def delete_pronunciation(request: web.Request) -> web.Response:
    if not request.app[STATE].voices.pronunciations.delete(_org(request), request.match_info["uid"]):
        return _detail(404, "Pronunciation dictionary not found")
    return web.Response(status=204, headers={"Content-Type": "application/json"})


def add_voice_routes(app: web.Application) -> None:
    r = app.router
    for base in ("/api/voices/", "/api/voices"):
        r.add_get(base, list_voices)
        r.add_post(base, create_voice)
    r.add_post("/api/voices/from-embedding", voice_from_embedding)
    r.add_get("/api/voices/{uid}", get_voice)
    r.add_put("/api/voices/{uid}", update_voice)
    r.add_delete("/api/voices/{uid}", delete_voice)
    r.add_post("/api/voice-generator/generate", generate)
    r.add_get("/api/voice-generator/embeddings", get_embedding)
    for base in ("/api/pronunciations/", "/api/pronunciations"):
        r.add_get(base, list_pronunciations)
        r.add_post(base, create_pronunciation)
    r.add_get("/api/pronunciations/{uid}", get_pronunciation)
    r.add_put("/api/pronunciations/{uid}", update_pronunciation)
    r.add_delete("/api/pronunciations/{uid}", delete_pronunciation)
