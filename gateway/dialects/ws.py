"""WebSocket routes: a client socket bridged to a Gradium streaming session.

Two tasks per session (client -> Gradium, Gradium -> client) plus an idle watchdog; when any ends
the others are cancelled, so a vanished client never leaves an upstream socket open. Client frames
are matched against the route's `inbound` rules (first match wins) and become Gradium actions;
Gradium messages go through the route's transform and are rendered by its templates.
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
    plan_session,
    render_event,
    request_id_headers,
)
from gateway.dialects.http import Handler
from gateway.dialects.textbuffer import WordBuffer
from gateway.errors import GatewayError
from gateway.mapping.compiler import CompiledMapping, CompiledRoute
from gateway.mapping.params import RequestData
from gateway.upstream.gradium import GradiumStream

log = structlog.get_logger("gateway")
FIRST_MESSAGE_TIMEOUT_S = 20.0
GRADIUM_EVENT = "@gradium"  # a transform asking for a message to Gradium (e.g. an end-of-turn flush)


class _ClientGone(Exception):
    pass


class _CloseRequested(Exception):
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


def ws_route_handler(mapping: CompiledMapping, route: CompiledRoute) -> Handler:
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
    cred = find_credential(ctx.mapping.credentials, req)
    ws = web.WebSocketResponse(
        protocols=route.ws.spec.subprotocols,
        max_msg_size=app[SETTINGS].limits.max_ws_message_bytes,
        compress=False,
        autoping=True,
        heartbeat=None,
    )
    ws.headers.update(request_id_headers(ctx))
    session = WsSession(request, ctx, ws, req, cred)
    if ctx.mapping.errors.refuse_upgrade:
        # Credentials, parameters and Gradium's own verdict (key, voice, format) are known before
        # the 101, so a refusal is an HTTP status the client's SDK understands.
        try:
            await session.open_upstream(wait_ready=True)
        except GatewayError as err:
            await session.close_upstream()
            app[METRICS].requests.labels(ctx.mapping.provider, route.name, str(
                ctx.mapping.errors.kinds[err.kind].status)).inc()
            return refuse_upgrade(ctx, err)
    await ws.prepare(request)
    metrics = app[METRICS]
    metrics.active_ws.labels(ctx.mapping.provider).inc()
    status = "ok"
    try:
        status = await session.run()
    finally:
        metrics.active_ws.labels(ctx.mapping.provider).dec()
        metrics.requests.labels(ctx.mapping.provider, route.name, status).inc()
        metrics.duration.labels(ctx.mapping.provider, route.name).observe(time.monotonic() - ctx.started)
    return ws


class WsSession:
    def __init__(
        self,
        request: web.Request,
        ctx: RequestContext,
        ws: web.WebSocketResponse,
        req: RequestData,
        cred: Credential | None,
    ) -> None:
        self.app = request.app
        self.ctx = ctx
        self.route = ctx.route
        assert self.route.ws is not None
        self.wspec = self.route.ws
        self.ws = ws
        self.req = req
        self.cred = cred
        self.upstream: GradiumStream | None = None
        self.plan: SessionPlan | None = None
        self.ready: dict[str, Any] | None = None  # Gradium's `ready`, when read before the upgrade
        self.base_scope: dict[str, Any] = {}
        self.in_transcoder: Transcoder | None = None
        self.words = WordBuffer()
        self.eos_sent = False
        self.flush_id = 0
        self.last_activity = time.monotonic()
        self.first_out: float | None = None
        self.frames_in = 0
        self.events_out = 0

    # -- lifecycle -------------------------------------------------------------------------------

    async def run(self) -> str:
        tasks: list[asyncio.Task[Any]] = []
        try:
            first = None
            if self.upstream is None:
                if self.wspec.spec.open == "first_message":
                    first = await self._first_message()
                    self.req.message = first if isinstance(first, dict) else None
                await self.open_upstream(wait_ready=False)
            tasks = [
                asyncio.create_task(self._upstream_to_client(), name="upstream->client"),
                asyncio.create_task(self._client_to_upstream(first), name="client->upstream"),
            ]
            idle = self._idle_seconds()
            if idle:
                tasks.append(asyncio.create_task(self._watchdog(idle), name="idle"))
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in tasks:
                if not t.done():
                    t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            finished = next(iter(done))
            exc = finished.exception()
            if exc is not None:
                raise exc
            if finished.get_name() == "upstream->client":
                await self.ws.close(code=self.wspec.spec.close_on_end)
                return "ok"
            return "client_closed"
        except GatewayError as err:
            await self._fail(err)
            return err.kind
        except _CloseRequested:
            await self.ws.close(code=1000)
            return "ok"
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
                if not t.done():
                    t.cancel()
            await self.close_upstream()
            log.info(
                "ws.done",
                ms=self.ctx.elapsed_ms(),
                frames_in=self.frames_in,
                events_out=self.events_out,
                first_output_ms=round((self.first_out - self.ctx.started) * 1000, 2) if self.first_out else None,
                upstream_request_id=getattr(self.upstream, "request_id", None),
            )

    async def _first_message(self) -> Any:
        try:
            msg = await self.ws.receive(timeout=FIRST_MESSAGE_TIMEOUT_S)
        except TimeoutError:
            raise GatewayError("idle_timeout", "No initial message received") from None
        return self._decode(msg)

    async def open_upstream(self, wait_ready: bool) -> None:
        if self.cred is None and self.req.message is not None:
            self.cred = find_credential(self.ctx.mapping.credentials, self.req)
        key = self.app[AUTH].upstream_key(self.cred, scope=self.route.name)
        params = self.route.read_params(self.req)
        self.plan = plan_session(self.ctx, params)
        self.base_scope = self.ctx.scope(params)
        if self.plan.kind == "asr":
            try:
                self.in_transcoder = make_transcoder(self.plan.info.audio_in, self.plan.info.gradium_in)
            except AudioError as exc:
                raise GatewayError("unsupported_format", str(exc)) from None
        spec = self.route.spec.gradium
        assert spec is not None
        self.upstream = await self.app[GRADIUM].open_ws(spec.kind, self.plan.setup, key)
        if wait_ready:
            timeout = self.app[SETTINGS].gradium.ready_timeout_s
            try:
                self.ready = await asyncio.wait_for(self.upstream.recv(), timeout)
            except TimeoutError:
                raise GatewayError("upstream_unavailable", "Gradium did not answer in time") from None
        fmt = self.plan.setup.get("output_format") or self.plan.setup.get("input_format")
        log.info("ws.open", upstream_format=fmt)

    async def close_upstream(self) -> None:
        if self.upstream is not None:
            with contextlib.suppress(Exception):
                await self.upstream.close()

    def _idle_seconds(self) -> float | None:
        if self.wspec.idle_seconds is None:
            return None
        value = self.wspec.idle_seconds(self.base_scope)
        return float(value) if value else None

    async def _watchdog(self, seconds: float) -> None:
        while True:
            remaining = self.last_activity + seconds - time.monotonic()
            if remaining <= 0:
                idle = self.wspec.spec.idle
                assert idle is not None
                raise GatewayError(
                    idle.error, idle.message or f"No input received within {seconds:g} seconds"
                )
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

    async def _client_to_upstream(self, first: Any) -> None:
        if first is not None:
            await self._handle(first)
        while True:
            msg = await self.ws.receive()
            data = self._decode(msg)
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
        if action == "close":
            raise _CloseRequested()
        if action == "keepalive":
            return
        if self.eos_sent:
            return  # input after end of input has nowhere to go
        fields: dict[str, Any] = {}
        if rule.fields is not None:
            scope = self.base_scope.copy()
            scope["message"] = data
            fields = rule.fields(scope) or {}
        assert self.upstream is not None and self.plan is not None
        if action == "audio":
            fields["audio"] = await self._audio(data if isinstance(data, bytes | bytearray) else fields.get("audio"))
        elif action == "text":
            text = fields.get("text")
            if text is not None and not isinstance(text, str):
                raise GatewayError("invalid_message", "text must be a string")
            ready = self.words.push(text or "")
            if ready:
                await self.upstream.send({"type": "text", "text": ready})
            if fields.get("flush"):
                await self._flush()
        elif action == "flush":
            await self._flush()
            return  # _flush tells the transform, with the flush id
        elif action == "end_of_stream":
            await self._end_of_input()
        for name, ev in self.plan.transform.on_action(action, fields):
            await self._send_event(name, ev)

    async def _audio(self, chunk: Any) -> bytes:
        """Transcode and forward one chunk of client audio; returns the client's bytes."""
        assert self.upstream is not None and self.in_transcoder is not None
        if isinstance(chunk, str):
            try:
                chunk = base64.b64decode(chunk, validate=True)
            except (binascii.Error, ValueError):
                raise GatewayError("invalid_audio", "audio is not valid base64") from None
        if not chunk:
            return b""
        chunk = bytes(chunk)
        out = self.in_transcoder.feed(chunk)
        if out:
            await self.upstream.send({"type": "audio", "audio": base64.b64encode(out).decode()})
        return chunk

    async def _flush(self) -> None:
        assert self.upstream is not None and self.plan is not None
        if self.plan.kind == "tts":
            rest = self.words.drain()
            # Gradium TTS flushes with an inline tag; it joins messages with a space.
            await self.upstream.send({"type": "text", "text": f"{rest} <flush>" if rest else "<flush>"})
            return
        if self.in_transcoder is not None:
            tail = self.in_transcoder.flush() if not self.in_transcoder.passthrough else b""
            if tail:
                await self.upstream.send({"type": "audio", "audio": base64.b64encode(tail).decode()})
        self.flush_id += 1
        await self.upstream.send({"type": "flush", "flush_id": self.flush_id})
        for name, ev in self.plan.transform.on_action("flush", {"flush_id": self.flush_id}):
            await self._send_event(name, ev)

    async def _end_of_input(self) -> None:
        assert self.upstream is not None and self.plan is not None
        if self.plan.kind == "tts":
            rest = self.words.drain()
            if rest:
                await self.upstream.send({"type": "text", "text": rest})
        elif self.in_transcoder is not None:
            tail = self.in_transcoder.flush()
            if tail:
                await self.upstream.send({"type": "audio", "audio": base64.b64encode(tail).decode()})
        await self.upstream.send({"type": "end_of_stream"})
        self.eos_sent = True

    # -- Gradium -> client -----------------------------------------------------------------------

    async def _upstream_to_client(self) -> None:
        assert self.upstream is not None and self.plan is not None
        transform = self.plan.transform
        if self.ready is not None:
            transform.on_gradium(self.ready)
        while True:
            msg = await self.upstream.recv()
            if msg is None:
                return
            for name, fields in transform.on_gradium(msg):
                if name == GRADIUM_EVENT:
                    if not self.eos_sent:
                        await self.upstream.send(fields)
                    continue
                await self._send_event(name, fields)
            if msg.get("type") == "end_of_stream":
                return

    async def _send_event(self, name: str, fields: dict[str, Any]) -> None:
        rendered = render_event(self.route, self.base_scope, name, fields)
        if rendered is None:
            binary = fields.get("binary")
            if not binary:
                return
            await self.ws.send_bytes(binary)
        else:
            await self.ws.send_frame(orjson.dumps(rendered), WSMsgType.TEXT)
        self.events_out += 1
        if self.first_out is None:
            self.first_out = time.monotonic()
            self.app[METRICS].first_output.labels(self.ctx.mapping.provider, self.route.name).observe(
                self.first_out - self.ctx.started
            )
