"""REST front end: speech endpoints (streamed), voices, usage, browser tokens, health."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, date, datetime
from typing import Any

import orjson
from aiohttp import web

from gateway.emulator.auth import key_id
from gateway.emulator.faults import FAULTS, Action, FaultGate
from gateway.emulator.protocol import (
    AUTH_FAILED,
    POLICY,
    UNSUPPORTED,
    GradiumError,
    new_request_id,
    parse_stt_setup,
    parse_tts_setup,
    rest_error_text,
    stt_ready,
    tts_ready,
)
from gateway.emulator.state import STATE, EmulatorState
from gateway.emulator.stats import STATS
from gateway.emulator.stt import SttEngine
from gateway.emulator.tts import Pacer, TtsEngine
from gateway.emulator.voices import DEFAULT_VOICE_ID
from gateway.upstream import protocol as wire

Message = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# REST STT picks its input format from Content-Type (specs §4); a missing header means wav.
_ASR_CONTENT_TYPES = {"": "wav", "audio/wav": "wav", "audio/pcm": "pcm", "audio/ogg": "opus", "audio/opus": "opus"}
NDJSON = "application/x-ndjson"


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _speech_error(code: int, message: str) -> web.Response:
    """Pre-stream failure of a speech endpoint: HTTP 500, plain text (DOCS:errors)."""
    return web.Response(status=500, text=rest_error_text(code, message), content_type="text/plain")


def _detail(status: int, detail: str) -> web.Response:
    return _json({"detail": detail}, status=status)


def guarded(*, speech: bool) -> Callable[[Handler], Handler]:
    """Count, apply REST faults and check the key before the handler runs.

    Speech endpoints report auth failures as HTTP 500 text; CRUD endpoints as 401 `{"detail"}` (SK).
    """

    def wrap(handler: Handler) -> Handler:
        async def guarded_handler(request: web.Request) -> web.StreamResponse:
            app = request.app
            app[STATS].rest_requests += 1
            gate = FaultGate(app[FAULTS].take(request.path, "rest"), app[STATS])
            canned = gate.http_response()
            if canned is not None:
                return canned
            key = app[STATE].auth.authenticate(request, allow_token=False)
            if key is None:
                app[STATS].auth_failures += 1
                return _speech_error(POLICY, AUTH_FAILED) if speech else _detail(401, AUTH_FAILED)
            request["emulator_key"] = key
            request["emulator_gate"] = gate
            return await handler(request)

        return guarded_handler

    return wrap


class _Stream:
    """Writes one REST stream through the request's fault gate."""

    def __init__(self, request: web.Request, response: web.StreamResponse, *, ndjson: bool) -> None:
        self.request = request
        self.response = response
        self.gate: FaultGate = request["emulator_gate"]
        self.ndjson = ndjson
        self.done = False

    async def write(self, msg: Message) -> None:
        if self.done:
            return
        # Raw audio has no ready line, but latency faults still apply before the first byte.
        action = await self.gate.before(msg["type"])
        if action is Action.DROP:
            self.done = True
            if self.request.transport is not None:
                self.request.transport.abort()
            return
        if action is Action.ERROR:
            # In-stream failures are an error line then the end of the body; raw audio is simply
            # cut short, which is all a client of only_audio ever sees (PW).
            self.done = True
            if self.ndjson:
                assert self.gate.faults is not None
                f = self.gate.faults
                await self.response.write(wire.dumps_line(wire.error(f.error_code, f.error_message)))
            return
        if not self.ndjson and msg["type"] != wire.AUDIO:
            return
        await self.response.write(wire.dumps_line(msg) if self.ndjson else msg["audio"])
        self.gate.sent += 1
        self.request.app[STATS].messages_out += 1

    async def write_all(self, msgs: Iterable[Message], pacer: Pacer | None = None) -> None:
        if self.done:
            return
        for msg in msgs:
            if pacer is not None:
                await pacer.wait(msg)
            await self.write(msg)
            if self.done:
                return

    async def end(self) -> None:
        if self.request.transport is None or self.request.transport.is_closing():
            return
        with contextlib.suppress(ConnectionError):
            await self.response.write_eof()


# -- speech ---------------------------------------------------------------------------------------


@guarded(speech=True)
async def post_tts(request: web.Request) -> web.StreamResponse:
    state: EmulatorState = request.app[STATE]
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return _speech_error(UNSUPPORTED, "Invalid JSON body")
    if not isinstance(body, dict):
        return _speech_error(UNSUPPORTED, "The body must be a JSON object")
    text = body.get("text")
    if not isinstance(text, str):
        return _speech_error(UNSUPPORTED, "text is required")
    if body.get("json_config") is None and "json_config" in request.query:
        body["json_config"] = request.query["json_config"]  # SK: also accepted as a query parameter
    try:
        setup = parse_tts_setup(body, state.voices, DEFAULT_VOICE_ID)
        engine = TtsEngine(setup.audio_format, setup.voice)  # pronunciation_id: WebSocket only (DOCS)
    except GradiumError as exc:
        return _speech_error(exc.code, exc.message)
    request.app[STATS].record_setup(
        "post/speech/tts",
        body,
        key_id=key_id(request["emulator_key"]),
        source=request.headers.get("x-api-source"),
    )
    state.usage.sessions += 1
    state.usage.tts_characters += len(text)
    only_audio = bool(body.get("only_audio", False))
    fmt = setup.audio_format
    response = web.StreamResponse(headers={"Content-Type": fmt.mime if only_audio else NDJSON})
    await response.prepare(request)
    out = _Stream(request, response, ndjson=not only_audio)
    pacer = Pacer.for_settings(state.settings)
    ready = tts_ready(
        new_request_id(),
        setup,
        engine.sample_rate,
        model_ext=state.settings.model_ext,
        residency=state.settings.residency,
    )
    await out.write(ready)
    await out.write_all(engine.feed_text(text), pacer)
    await out.write_all(engine.finish(), pacer)
    await out.write(wire.end_of_stream())
    await out.end()
    return response


@guarded(speech=True)
async def post_asr(request: web.Request) -> web.StreamResponse:
    state: EmulatorState = request.app[STATE]
    content_type = request.headers.get("Content-Type", "")
    input_format = request.query.get("input_format")
    if not input_format:
        mime = content_type.split(";")[0].strip().lower()
        if mime not in _ASR_CONTENT_TYPES:
            # Verbatim, typo included: this one is not in the "error from server" shape (DOCS).
            return web.Response(
                status=500, text=f"unsupported content type for SST '{content_type}'", content_type="text/plain"
            )
        input_format = _ASR_CONTENT_TYPES[mime]
    setup_msg = {
        "model_name": request.query.get("model") or "default",
        "input_format": input_format,
        "json_config": request.query.get("json_config"),
    }
    try:
        setup = parse_stt_setup(setup_msg, state.settings.default_delay_in_frames)
    except GradiumError as exc:
        try:
            parse_stt_setup({**setup_msg, "json_config": None}, state.settings.default_delay_in_frames)
        except GradiumError:
            return _speech_error(exc.code, exc.message)
        # A bad json_config gets an empty 200 body from real Gradium (SK, marked verified).
        return web.Response(status=200, content_type=NDJSON)
    try:
        engine = SttEngine(setup)
    except GradiumError as exc:
        return _speech_error(exc.code, exc.message)
    engine.emit_steps = state.settings.rest_asr_steps
    request.app[STATS].record_setup(
        "post/speech/asr",
        {**setup_msg, "content_type": content_type},
        key_id=key_id(request["emulator_key"]),
        source=request.headers.get("x-api-source"),
    )
    state.usage.sessions += 1
    response = web.StreamResponse(headers={"Content-Type": NDJSON})
    await response.prepare(request)
    out = _Stream(request, response, ndjson=True)
    await out.write(stt_ready(new_request_id(), setup, residency=state.settings.residency))
    try:
        async for chunk in request.content.iter_chunked(16384):
            await out.write_all(engine.feed_audio(chunk))
            if out.done:
                break
        await out.write_all(engine.finish())
    except GradiumError as exc:
        await out.write_all([wire.error(exc.code, exc.message)])
        out.done = True
    finally:
        state.usage.stt_seconds += engine.audio_seconds
    await out.write(wire.end_of_stream())
    await out.end()
    return response


# -- voices, usage, tokens ------------------------------------------------------------------------


@guarded(speech=False)
async def credits(request: web.Request) -> web.Response:
    state = request.app[STATE]
    allocated = state.settings.allocated_credits
    today = datetime.now(UTC).date()
    rollover = date(today.year + (today.month == 12), today.month % 12 + 1, 1)
    return _json(
        {
            "remaining_credits": max(0, allocated - state.usage.consumed_credits),
            "allocated_credits": allocated,
            "billing_period": today.strftime("%Y-%m"),
            "next_rollover_date": rollover.isoformat(),
            "plan_name": state.settings.plan_name,
        }
    )


@guarded(speech=False)
async def usage_summary(request: web.Request) -> web.Response:
    usage = request.app[STATE].usage
    return _json(
        {
            "consumed_credits": usage.consumed_credits,
            "egress_audio_duration": 0.0,
            "egress_messages": usage.egress_messages,
            "egress_text_size": 0,
            "ingress_audio_duration": round(usage.stt_seconds, 3),
            "ingress_messages": usage.ingress_messages,
            "ingress_text_size": usage.tts_characters,
            "sessions": usage.sessions,
        }
    )


@guarded(speech=False)
async def api_token(request: web.Request) -> web.Response:
    token, expires_at = request.app[STATE].auth.mint(request["emulator_key"])
    request.app[STATS].tokens_minted += 1
    return _json({"token": token, "expires_at": expires_at})


async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


def add_rest_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/post/speech/tts", post_tts)
    r.add_post("/api/post/speech/asr", post_asr)
    r.add_get("/api/usages/credits", credits)
    r.add_get("/api/usages/summary", usage_summary)
    r.add_get("/api/api-keys/token", api_token)
    r.add_get("/healthz", healthz)
