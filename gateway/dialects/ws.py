"""WebSocket routes: a client socket bridged to one or more Gradium streaming requests.

Each Gradium request is a *context* (keyed by the provider's context id; `""` on single-request
sockets) with its own upstream, transform, text buffer and transcoder. Client frames are matched
against the route's `inbound` rules (first match wins) and become actions on a context; each context's
Gradium messages go through its transform and the route's templates. The client loop, one reader per
context and an idle watchdog run as tasks; the first failure or the end of the session cancels all of
them, so a vanished client never leaves an upstream socket open.

A context's end depends on the route: `on_end: close` closes the socket (ElevenLabs stream-input,
Deepgram listen); `on_end: keep` lets the next input start a new request (Deepgram speak's Flush,
ElevenLabs multi-context), whose output waits until the previous request for that context is done.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import time
from typing import Any

import orjson
import structlog
from aiohttp import WSMsgType, web

from gateway.audio.formats import is_compressed
from gateway.audio.transcode import AudioError, Transcoder, make_transcoder
from gateway.auth import Credential, find_credential
from gateway.dialects.common import (
    AUTH,
    GRADIUM,
    METRICS,
    SETTINGS,
    RequestContext,
    SessionPlan,
    error_scope,
    offload,
    plan_session,
    render_event,
    request_id_headers,
    transform_gradium,
)
from gateway.dialects.http import Handler
from gateway.dialects.textbuffer import WordBuffer
from gateway.errors import GatewayError
from gateway.mapping.compiler import CompiledMapping
from gateway.mapping.params import RequestData
from gateway.mapping.template import Messages
from gateway.upstream.gradium import GradiumStream
from gateway.upstream.mux import GradiumMux

log = structlog.get_logger("gateway")
FIRST_MESSAGE_TIMEOUT_S = 20.0
GRADIUM_EVENT = "@gradium"  # a transform asking for a message to Gradium (e.g. an end-of-turn flush)


class _ClientGone(Exception):
    pass


def refuse_upgrade(ctx: RequestContext, err: GatewayError) -> web.Response:
    """Deepgram-style refusal: an HTTP status on the upgrade, the message in a header and the body."""
    spec = ctx.mapping.errors.kinds[err.kind]
    headers = dict(request_id_headers(ctx))
    if ctx.mapping.errors.refuse_header:
        headers[ctx.mapping.errors.refuse_header] = err.message
    body = ctx.mapping.errors.http_body(error_scope(ctx, err))
    log.info("ws.refused", kind=err.kind, status=spec.status, message=err.message)
    return web.Response(status=spec.status, body=orjson.dumps(body), content_type="application/json",
                        headers=headers)


def ws_route_handler(mapping: CompiledMapping, route: Any) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        ctx = RequestContext(mapping, route)
        structlog.contextvars.bind_contextvars(
            request_id=ctx.request_id, provider=mapping.provider, route=route.name
        )
        try:
            return await _serve(request, ctx)
        finally:
            structlog.contextvars.unbind_contextvars("request_id", "provider", "route")

    return handle


async def _serve(request: web.Request, ctx: RequestContext) -> web.StreamResponse:
    app = request.app
    route = ctx.route
    assert route.ws is not None
    req = RequestData(path=request.match_info, query=request.query, header=request.headers)
    ws = web.WebSocketResponse(
        protocols=route.ws.spec.subprotocols,
        max_msg_size=app[SETTINGS].limits.max_ws_message_bytes,
        compress=False,
        autoping=True,
        heartbeat=None,
    )
    ws.headers.update(request_id_headers(ctx))
    session = WsSession(request, ctx, ws, req, find_credential(ctx.mapping.credentials, req))
    metrics = app[METRICS]
    if ctx.mapping.errors.refuse_upgrade:
        # Credentials, parameters and Gradium's own verdict (key, voice, format) are known before
        # the 101, so a refusal is an HTTP status the client's SDK understands.
        try:
            await session.open_context("", None, wait_ready=True)
        except GatewayError as err:
            await session.close_all()
            metrics.requests.labels(ctx.mapping.provider, route.name,
                                    str(ctx.mapping.errors.kinds[err.kind].status)).inc()
            return refuse_upgrade(ctx, err)
    await ws.prepare(request)
    metrics.active_ws.labels(ctx.mapping.provider).inc()
    status = "ok"
    try:
        status = await session.run()
    finally:
        metrics.active_ws.labels(ctx.mapping.provider).dec()
        metrics.requests.labels(ctx.mapping.provider, route.name, status).inc()
        metrics.duration.labels(ctx.mapping.provider, route.name).observe(time.monotonic() - ctx.started)
    return ws


class Context:
    """One Gradium request on a client socket."""

    def __init__(self, key: str, plan: SessionPlan, scope: dict[str, Any], upstream: GradiumStream,
                 transcoder: Transcoder | None, prev: Context | None) -> None:
        self.key = key
        self.plan = plan
        self.scope = scope
        self.upstream = upstream
        self.transcoder = transcoder
        self.prev = prev  # the previous request under the same key, still finishing
        self.words = WordBuffer()
        self.eos_sent = False
        self.flush_id = 0
        self.ready: dict[str, Any] | None = None
        self.reader: asyncio.Task[None] | None = None
        self.finished = asyncio.Event()
        self.heavy_input = transcoder is not None and not transcoder.passthrough and (
            is_compressed(plan.info.audio_in) or is_compressed(plan.info.gradium_in))


class WsSession:
    def __init__(self, request: web.Request, ctx: RequestContext, ws: web.WebSocketResponse, req: RequestData,
                 cred: Credential | None) -> None:
        self.app = request.app
        self.ctx = ctx
        self.route = ctx.route
        assert self.route.ws is not None
        self.wspec = self.route.ws
        self.ws = ws
        self.req = req
        self.cred = cred
        self.key: str | None = None
        self.active: dict[str, Context] = {}  # accepting input
        self.live: set[Context] = set()  # not finished (includes those draining after end of input)
        self.done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.accepting = True
        self.closing = False
        self.sequence = 0
        self.last_activity = time.monotonic()
        self.first_out: float | None = None
        self.frames_in = 0
        self.events_out = 0
        self.upstream_request_id: str | None = None
        self._scope: dict[str, Any] | None = None
        self.mux: GradiumMux | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    async def run(self) -> str:
        tasks: list[asyncio.Task[Any]] = []
        try:
            first = None
            if not self.live and self.wspec.spec.open != "on_demand":
                if self.wspec.spec.open == "first_message":
                    first = await self._first_message()
                await self.open_context("", first if isinstance(first, dict) else None, wait_ready=False)
            if self.wspec.greeting is not None:
                await self._send(self.wspec.greeting(self._session_scope()))
            for c in self.live:
                self._start(c)
            tasks = [asyncio.create_task(self._client_loop(first), name="client")]
            idle = self._idle_seconds()
            if idle:
                tasks.append(asyncio.create_task(self._watchdog(idle), name="idle"))
            await asyncio.wait([*tasks, self.done], return_when=asyncio.FIRST_COMPLETED)
            if self.done.done():
                await self.ws.close(code=self.done.result())  # raises the failure, if that is how it ended
                return "ok"
            finished = next(t for t in tasks if t.done())
            exc = finished.exception()
            if exc is not None:
                raise exc
            return "client_closed"
        except GatewayError as err:
            await self._fail(err)
            return err.kind
        except (_ClientGone, ConnectionResetError):
            return "client_gone"
        except AudioError as exc:
            await self._fail(GatewayError("invalid_audio", str(exc)))
            return "invalid_audio"
        except Exception:
            log.exception("ws.internal_error")
            await self._fail(GatewayError("internal", "Internal gateway error"))
            return "internal"
        finally:
            for t in tasks:
                t.cancel()
            await self.close_all()
            log.info(
                "ws.done",
                ms=self.ctx.elapsed_ms(),
                frames_in=self.frames_in,
                events_out=self.events_out,
                first_output_ms=round((self.first_out - self.ctx.started) * 1000, 2) if self.first_out else None,
                upstream_request_id=self.upstream_request_id,
            )

    async def close_all(self) -> None:
        for c in list(self.live):
            if c.reader is not None and c.reader is not asyncio.current_task():
                c.reader.cancel()
            with contextlib.suppress(Exception):
                await c.upstream.close()
        self.live.clear()
        self.active.clear()
        if self.mux is not None:
            with contextlib.suppress(Exception):
                await self.mux.close()

    def _finish(self, code: int) -> None:
        if not self.done.done():
            self.done.set_result(code)

    def _abort(self, exc: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(exc)

    async def _first_message(self) -> Any:
        try:
            msg = await self.ws.receive(timeout=FIRST_MESSAGE_TIMEOUT_S)
        except TimeoutError:
            raise GatewayError("idle_timeout", "No initial message received") from None
        return self._decode(msg)

    def _session_scope(self) -> dict[str, Any]:
        """Scope for socket-level templates (greeting, inbound fields, cleared): handshake params only."""
        if self._scope is None:
            try:
                params = self.route.read_params(RequestData(self.req.path, self.req.query, self.req.header))
            except GatewayError:
                params = {}
            self._scope = self.ctx.scope(params)
        scope = self._scope.copy()
        scope["sequence_id"] = self.sequence
        return scope

    def _idle_seconds(self) -> float | None:
        if self.wspec.idle_seconds is None:
            return None
        value = self.wspec.idle_seconds(self._session_scope())
        return float(value) if value else None

    async def _watchdog(self, seconds: float) -> None:
        while True:
            remaining = self.last_activity + seconds - time.monotonic()
            if remaining <= 0:
                idle = self.wspec.spec.idle
                assert idle is not None
                raise GatewayError(idle.error, idle.message or f"No input received within {seconds:g} seconds")
            await asyncio.sleep(remaining)

    async def _fail(self, err: GatewayError) -> None:
        spec = self.ctx.mapping.errors.kinds[err.kind]
        log.info("ws.error", kind=err.kind, message=err.message, close=spec.close)
        if self.ws.closed:
            return
        tpl = self.ctx.mapping.errors.ws_message
        with contextlib.suppress(Exception):
            if tpl is not None:
                await self.ws.send_frame(orjson.dumps(tpl(error_scope(self.ctx, err))), WSMsgType.TEXT)
            await self.ws.close(code=spec.close, message=(spec.reason or "").encode()[:120])

    # -- contexts --------------------------------------------------------------------------------

    async def open_context(self, key: str, message: dict[str, Any] | None, *, wait_ready: bool) -> Context:
        limit = self.wspec.spec.max_contexts
        if limit is not None and len(self.live) >= limit:
            raise GatewayError("too_many_contexts",
                               f"Maximum simultaneous contexts per WebSocket connection exceeded ({limit})")
        req = RequestData(self.req.path, self.req.query, self.req.header, message=message)
        if self.key is None:
            if self.cred is None and message is not None:
                self.cred = find_credential(self.ctx.mapping.credentials, req)
            self.key = self.app[AUTH].upstream_key(self.cred, scope=self.route.name)
        params = self.route.read_params(req)
        plan = plan_session(self.ctx, params)
        scope = self.ctx.scope(params)
        scope["context_id"] = key or None
        transcoder = None
        if plan.kind == "asr":
            try:
                transcoder = make_transcoder(plan.info.audio_in, plan.info.gradium_in)
            except AudioError as exc:
                raise GatewayError("unsupported_format", str(exc)) from None
        spec = self.route.spec.gradium
        assert spec is not None
        if self.wspec.spec.multiplex:
            if self.mux is None:
                self.mux = GradiumMux(self.app[GRADIUM], spec.kind, self.key)
            upstream: GradiumStream = await self.mux.open(plan.setup)
        else:
            upstream = await self.app[GRADIUM].open_ws(spec.kind, plan.setup, self.key)
        c = Context(key, plan, scope, upstream, transcoder, self.active.get(key))
        self.live.add(c)
        self.active[key] = c
        if wait_ready:
            try:
                c.ready = await asyncio.wait_for(upstream.recv(), self.app[SETTINGS].gradium.ready_timeout_s)
            except TimeoutError:
                raise GatewayError("upstream_unavailable", "Gradium did not answer in time") from None
        log.info("ws.context_open", context=key or None,
                 upstream_format=plan.setup.get("output_format") or plan.setup.get("input_format"))
        return c

    def _start(self, c: Context) -> None:
        c.reader = asyncio.create_task(self._read(c), name=f"context:{c.key}")

    async def _read(self, c: Context) -> None:
        try:
            if c.prev is not None:
                await c.prev.finished.wait()  # keep the order of audio under one context id
            transform = c.plan.transform
            if c.ready is not None:
                await self._emit(c, transform.on_gradium(c.ready))
            while True:
                msg = await c.upstream.recv()
                if msg is None:
                    break
                await self._emit(c, await transform_gradium(transform, msg))
                if msg.get("type") == "end_of_stream":
                    break
            self.upstream_request_id = c.upstream.request_id
        except asyncio.CancelledError:
            raise
        except GatewayError as err:
            self._abort(err)
            return
        except Exception as exc:
            self._abort(exc)
            return
        finally:
            c.finished.set()
        self.live.discard(c)
        if self.active.get(c.key) is c:
            del self.active[c.key]
        with contextlib.suppress(Exception):
            await c.upstream.close()
        if self.wspec.spec.on_end == "close" or (self.closing and not self.live):
            self._finish(self.wspec.spec.close_on_end)

    async def _emit(self, c: Context, events: list[tuple[str, dict[str, Any]]]) -> None:
        for name, fields in events:
            if name == GRADIUM_EVENT:
                if not c.eos_sent:
                    await c.upstream.send(fields)
                continue
            scope = c.scope.copy()
            scope.setdefault("sequence_id", self.sequence)
            rendered = render_event(self.route, scope, name, fields)
            if rendered is not None:
                await self._send(rendered)
            elif isinstance(fields.get("audio"), bytes) and fields["audio"]:
                await self.ws.send_bytes(fields["audio"])
                self._count_out()

    async def _send(self, rendered: Any) -> None:
        if isinstance(rendered, Messages):  # one event rendered as several messages (`$messages`)
            for item in rendered:
                await self._send(item)
            return
        await self.ws.send_frame(orjson.dumps(rendered), WSMsgType.TEXT)
        self._count_out()

    def _count_out(self) -> None:
        self.events_out += 1
        if self.first_out is None:
            self.first_out = time.monotonic()
            self.app[METRICS].first_output.labels(self.ctx.mapping.provider, self.route.name).observe(
                self.first_out - self.ctx.started
            )

    # -- client -> Gradium -----------------------------------------------------------------------

    def _decode(self, msg: Any) -> Any:
        if msg.type is WSMsgType.TEXT:
            try:
                return orjson.loads(msg.data)
            except orjson.JSONDecodeError:
                raise GatewayError("invalid_message", "Could not parse message: expected JSON") from None
        if msg.type is WSMsgType.BINARY:
            if self.wspec.spec.text_frames_only:
                raise GatewayError("invalid_message", "Binary frames are not accepted on this socket")
            return msg.data
        if msg.type is WSMsgType.ERROR:
            err = self.ws.exception()
            if err is not None and "size" in str(err).lower():
                raise GatewayError("payload_too_large", "Message is too large")
        raise _ClientGone()

    async def _client_loop(self, first: Any) -> None:
        if first is not None:
            await self._handle(first)
        while True:
            data = self._decode(await self.ws.receive())
            self.frames_in += 1
            await self._handle(data)

    async def _handle(self, data: Any) -> None:
        for rule in self.wspec.inbound:
            if rule.match(data):
                break
        else:
            return
        action = rule.action
        if action == "ignore":
            return
        self.last_activity = time.monotonic()
        if action == "error":
            raise GatewayError(rule.error or "invalid_message", rule.message or "Unexpected message")
        if action == "keepalive" or not self.accepting:
            return
        fields: dict[str, Any] = {}
        if rule.fields is not None:
            scope = self._session_scope()
            scope["message"] = data
            fields = rule.fields(scope) or {}
        key = "" if fields.get("context") is None else str(fields["context"])
        if action == "close":
            await self._close_gracefully()
            return
        if action == "clear":
            await self._clear(key)
            return
        c = self.active.get(key)
        if c is None or c.eos_sent:
            if action == "end_of_stream":
                return  # nothing open under that id
            c = await self.open_context(key, data if isinstance(data, dict) else None, wait_ready=False)
            self._start(c)
        if action == "audio":
            fields["audio"] = await self._audio(c, data if isinstance(data, bytes | bytearray) else fields.get("audio"))
        elif action == "text":
            text = fields.get("text")
            if text is not None and not isinstance(text, str):
                raise GatewayError("invalid_message", "text must be a string")
            ready = c.words.push(text or "")
            if ready:
                await c.upstream.send({"type": "text", "text": ready})
            if fields.get("flush"):
                await self._flush(c)
        elif action == "flush":
            await self._flush(c)
            return  # _flush tells the transform, with the flush id
        elif action == "end_of_stream":
            await self._end_of_input(c)
        await self._emit(c, c.plan.transform.on_action(action, fields))

    async def _audio(self, c: Context, chunk: Any) -> bytes:
        """Transcode and forward one chunk of client audio; returns the client's bytes."""
        if c.transcoder is None:
            raise GatewayError("invalid_message", "This socket does not take audio")
        if isinstance(chunk, str):
            try:
                chunk = base64.b64decode(chunk, validate=True)
            except (binascii.Error, ValueError):
                raise GatewayError("invalid_audio", "audio is not valid base64") from None
        if not chunk:
            return b""
        chunk = bytes(chunk)
        out = await offload(c.heavy_input, c.transcoder.feed, chunk)
        if out:
            await c.upstream.send({"type": "audio", "audio": base64.b64encode(out).decode()})
        return chunk

    async def _flush(self, c: Context) -> None:
        if c.plan.kind == "tts":
            rest = c.words.drain()
            # Gradium TTS flushes with an inline tag; it joins messages with a space.
            await c.upstream.send({"type": "text", "text": f"{rest} <flush>" if rest else "<flush>"})
            return
        if c.transcoder is not None and not c.transcoder.passthrough:
            tail = c.transcoder.flush()
            if tail:
                await c.upstream.send({"type": "audio", "audio": base64.b64encode(tail).decode()})
        c.flush_id += 1
        await c.upstream.send({"type": "flush", "flush_id": c.flush_id})
        await self._emit(c, c.plan.transform.on_action("flush", {"flush_id": c.flush_id}))

    async def _end_of_input(self, c: Context) -> None:
        if c.plan.kind == "tts":
            rest = c.words.drain()
            if rest:
                await c.upstream.send({"type": "text", "text": rest})
        elif c.transcoder is not None:
            tail = c.transcoder.flush()
            if tail:
                await c.upstream.send({"type": "audio", "audio": base64.b64encode(tail).decode()})
        await c.upstream.send({"type": "end_of_stream"})
        c.eos_sent = True
        c.scope["sequence_id"] = self.sequence  # e.g. Deepgram's Flushed counts flushes from 0
        self.sequence += 1
        if self.wspec.spec.on_end == "close":
            self.accepting = False  # the socket ends with this request

    async def _close_gracefully(self) -> None:
        """Finish every open request, then close (ElevenLabs close_socket, Deepgram Close)."""
        self.closing = True
        self.accepting = False
        for c in list(self.active.values()):
            if not c.eos_sent:
                await self._end_of_input(c)
        if not self.live:
            self._finish(1000)

    async def _clear(self, key: str) -> None:
        """Drop a request's pending text and audio at once (Deepgram Clear, Cartesia cancel)."""
        c = self.active.pop(key, None)
        if c is not None:
            self.live.discard(c)
            if c.reader is not None:
                c.reader.cancel()
            with contextlib.suppress(Exception):
                await c.upstream.close()
            c.finished.set()
        scope = self._session_scope()
        scope["context_id"] = key or None
        rendered = render_event(self.route, scope, "cleared", {})
        if rendered is not None:
            await self._send(rendered)
