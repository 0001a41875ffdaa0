"""WebSocket routes: a client socket bridged to one or more Gradium streaming requests.

Each Gradium request is a *context* (keyed by the provider's context id; `""` on single-request
sockets) with its own upstream, transform, text buffer and transcoder. Client frames are matched
against the route's `inbound` rules and become actions on a context (that half is in `ws_input.py`);
each context's Gradium messages go through its transform and the route's templates (this module).
The client loop, one reader per context and an idle watchdog run as tasks; the first failure or the
end of the session cancels all of them, so a vanished client never leaves an upstream socket open.

A context's end depends on the route: `on_end: close` closes the socket (ElevenLabs stream-input,
Deepgram listen); `on_end: keep` lets the next input start a new request (Deepgram speak's Flush,
ElevenLabs multi-context), whose output waits until the previous request for that context is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog
from aiohttp import web

from gateway.addons import ADDONS
from gateway.audio.formats import is_compressed
from gateway.audio.transcode import AudioError, Transcoder, make_transcoder
from gateway.auth import Credential, find_credential
from gateway.dialects.common import (
    AUTH,
    GRADIUM,
    SETTINGS,
    RequestContext,
    SessionPlan,
    error_scope,
    plan_session,
    render_event,
    request_id_headers,
    transform_gradium,
)
from gateway.dialects.http import Handler
from gateway.dialects.textbuffer import WordBuffer
from gateway.dialects.ws_input import MAX_REMEMBERED, ClientGone, ClientInput
from gateway.errors import GatewayError
from gateway.events import ClientOutput, ContextEnd, Flow, SessionEnd, SessionStart
from gateway.mapping.compiler import CompiledMapping
from gateway.mapping.params import RequestData
from gateway.mapping.template import Messages
from gateway.session.port import AiohttpPort, ClientPort, Refusal
from gateway.upstream.gradium import GradiumStream
from gateway.upstream.mux import GradiumMux

FIRST_MESSAGE_TIMEOUT_S = 20.0
GRADIUM_EVENT = "@gradium"  # a transform asking for a message to Gradium (e.g. an end-of-turn flush)


def refusal(ctx: RequestContext, err: GatewayError) -> Refusal:
    """Deepgram-style refusal: an HTTP status on the upgrade, the message in a header and the body."""
    spec = ctx.mapping.errors.kinds[err.kind]
    headers = dict(request_id_headers(ctx))
    if ctx.mapping.errors.refuse_header:
        headers[ctx.mapping.errors.refuse_header] = err.message
    body = ctx.mapping.errors.http_body(error_scope(ctx, err))
    if isinstance(body, str):  # plain-text error bodies (see `http_error`)
        return Refusal(spec.status, {**headers, "Content-Type": "text/plain; charset=utf-8"}, body.encode())
    return Refusal(spec.status, {**headers, "Content-Type": "application/json"}, orjson.dumps(body))


def ws_route_handler(mapping: CompiledMapping, route: Any) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        ctx = RequestContext(mapping, route)
        structlog.contextvars.bind_contextvars(
            request_id=ctx.request_id, provider=mapping.provider, route=route.name
        )
        app = request.app
        ws = web.WebSocketResponse(
            protocols=route.ws.spec.subprotocols,
            max_msg_size=app[SETTINGS].limits.max_ws_message_bytes,
            compress=False,
            autoping=True,
            heartbeat=None,
        )
        ws.headers.update(request_id_headers(ctx))
        refused: list[Refusal] = []

        async def accept() -> ClientPort:
            await ws.prepare(request)
            return AiohttpPort(ws)

        try:
            req = RequestData(path=request.match_info, query=request.query, header=request.headers)
            await run_ws(app, ctx, req, Flow(mapping.provider, route.name, "ws", request_id=ctx.request_id,
                                             started=ctx.started), accept, refused.append)
        finally:
            structlog.contextvars.unbind_contextvars("request_id", "provider", "route")
        if refused:
            r = refused[0]
            ctype = r.headers.pop("Content-Type")
            return web.Response(status=r.status, body=r.body, headers={**r.headers, "Content-Type": ctype})
        return ws

    return handle


async def run_ws(app: web.Application, ctx: RequestContext, req: RequestData, flow: Flow,
                 accept: Callable[[], Awaitable[ClientPort]], refuse: Callable[[Refusal], Any]) -> SessionEnd:
    """One WebSocket session on any client port: `accept` completes the upgrade and gives the port;
    `refuse` takes the HTTP answer that replaces it (routes with `refuse_upgrade`)."""
    route = ctx.route
    assert route.ws is not None
    ctx.req = req
    addons = app[ADDONS]
    if addons.session_start:
        addons.emit(SessionStart(flow))
    session = WsSession(app, ctx, flow, req, find_credential(ctx.mapping.credentials, req))
    end = SessionEnd(flow, "ok")
    try:
        if ctx.mapping.errors.refuse_upgrade:
            # Credentials, parameters and Gradium's own verdict (key, voice, format) are known before
            # the 101, so a refusal is an HTTP status the client's SDK understands.
            try:
                if route.ws.spec.open == "connect":
                    await session.open_context("", None, wait_ready=True)
                elif route.ws.spec.open == "on_demand":
                    # contexts start later, from their messages: only the credentials can be judged now
                    session.key = app[AUTH].upstream_key(session.cred, scope=route.name)
            except GatewayError as err:
                await session.close_all()
                r = refusal(ctx, err)
                refuse(r)
                end = SessionEnd(flow, str(r.status), http_status=r.status, kind=err.kind, message=err.message)
                return end
        session.port = await accept()
        end = await session.run()
        return end
    finally:
        end.t = time.monotonic()
        if addons.session_end:
            addons.emit(end)


class _NoPort:
    closed = True


_NO_PORT: Any = _NoPort()


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
        self.flush_timer: asyncio.TimerHandle | None = None  # `flush_after_ms`: the pending buffer-delay flush
        self.message: dict[str, Any] | None = None  # the client message that opened it (its params)
        self.segment: Any = None  # the `segment` its text belongs to (e.g. a dialogue line's voice)
        self.continued = False  # ended by a `segment` change: the context goes on, its `end` is not shown


class WsSession(ClientInput):
    def __init__(self, app: web.Application, ctx: RequestContext, flow: Flow, req: RequestData,
                 cred: Credential | None) -> None:
        self.app = app
        self.addons = app[ADDONS]
        self.flow = flow
        self.ctx = ctx
        self.route = ctx.route
        assert self.route.ws is not None
        self.wspec = self.route.ws
        self.port: ClientPort = _NO_PORT
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
        self.shared: dict[str, dict[str, Any]] = {}  # per context id: state its successive requests share
        self.cleared: dict[str, None] = {}  # `reject_cleared`: context ids cancelled on this socket (bounded)
        self.handling: str | None = None  # context id of the client message being handled
        self.background: set[asyncio.Task[None]] = set()  # timed flushes in flight
        self.close_code: int | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    async def run(self) -> SessionEnd:
        end = SessionEnd(self.flow, "ok")
        try:
            end.status = await self._run()
        except GatewayError as err:
            end.kind, end.message = err.kind, err.message
            end.status = err.kind
        except Exception as exc:
            end.exc = exc
            end.status = "internal"
        end.close_code = self.close_code
        end.frames_in, end.events_out, end.first_output = self.frames_in, self.events_out, self.first_out
        end.upstream_request_id = self.upstream_request_id
        return end

    async def _run(self) -> str:
        tasks: list[asyncio.Task[Any]] = []
        try:
            first = None
            if not self.live and self.wspec.spec.open != "on_demand":
                if self.wspec.spec.open == "first_message":
                    first = await self._first_message()
                await self.open_context("", first if isinstance(first, dict) else None, wait_ready=False)
            if self.wspec.spec.open == "on_demand" and self.key is None and self.cred is not None:
                # the handshake carried a credential (header, query token): judge it now, and let the
                # shared Gradium socket open before the first context needs it
                self.key = self.app[AUTH].upstream_key(self.cred, scope=self.route.name)
            if self.wspec.spec.multiplex and self.mux is None and self.key is not None:
                # contexts start on demand, but the key is known: open the shared Gradium socket while the
                # client sends its first message, so the handshake is not in its time to first audio
                spec = self.route.spec.gradium
                assert spec is not None
                self.mux = GradiumMux(self.app[GRADIUM], spec.kind, self.key)
                warm = asyncio.create_task(self.mux.connect())
                self.background.add(warm)
                warm.add_done_callback(lambda t: (self.background.discard(t), t.cancelled() or t.exception()))
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
                code = self.done.result()  # raises the failure, if that is how it ended
                self.close_code = code
                await self.port.close(code)
                return "ok"
            finished = next(t for t in tasks if t.done())
            exc = finished.exception()
            if exc is not None:
                raise exc
            return "client_closed"
        except GatewayError as err:
            await self._fail(err)
            raise
        except (ClientGone, ConnectionResetError):
            return "client_gone"
        except AudioError as exc:
            err = GatewayError("invalid_audio", str(exc))
            await self._fail(err)
            raise err from None
        except Exception:
            await self._fail(GatewayError("internal", "Internal gateway error"))
            raise
        finally:
            for t in tasks:
                t.cancel()
            await self.close_all()

    async def close_all(self) -> None:
        for t in list(self.background):
            t.cancel()
        for c in list(self.live):
            if c.flush_timer is not None:
                c.flush_timer.cancel()
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
            msg = await self.port.receive(timeout=FIRST_MESSAGE_TIMEOUT_S)
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
        if self.port.closed:
            return
        tpl = self.wspec.error_message or self.ctx.mapping.errors.ws_message
        scope = error_scope(self.ctx, err)
        code = self.wspec.spec.error_codes.get(err.kind)
        if code is not None:
            scope["error"]["code"] = code
        with contextlib.suppress(Exception):
            if tpl is not None:
                await self._send(tpl(scope))
            self.close_code = spec.close
            await self.port.close(spec.close, (spec.reason or "").encode()[:120])

    # -- contexts --------------------------------------------------------------------------------

    async def open_context(self, key: str, message: dict[str, Any] | None, *, wait_ready: bool) -> Context:
        limit = self.wspec.spec.max_contexts
        keys = {x.key for x in self.live}  # a context counts once, however many requests it has in flight
        if limit is not None and key not in keys and len(keys) >= limit:
            raise GatewayError("too_many_contexts",
                               f"Maximum simultaneous contexts per WebSocket connection exceeded ({limit})")
        req = RequestData(self.req.path, self.req.query, self.req.header, message=message)
        if self.key is None:
            if self.cred is None and message is not None:
                self.cred = find_credential(self.ctx.mapping.credentials, req)
            self.key = self.app[AUTH].upstream_key(self.cred, scope=self.route.name)
        params = self.route.read_params(req)
        shared = self.shared.get(key)
        if shared is None:
            shared = self.shared[key] = {}
            if len(self.shared) > MAX_REMEMBERED:
                del self.shared[next(iter(self.shared))]
        plan = plan_session(self.ctx, params, shared)
        scope = self.ctx.scope(params)
        scope["context_id"] = key or None
        transcoder = None
        if plan.kind == "asr":
            try:
                transcoder = make_transcoder(plan.info.audio_in, plan.info.gradium_in)
            except AudioError as exc:
                raise GatewayError("unsupported_format", str(exc)) from None
        schedule = self._text_schedule(scope)
        spec = self.route.spec.gradium
        assert spec is not None
        if self.wspec.spec.multiplex:
            if self.mux is None:
                self.mux = GradiumMux(self.app[GRADIUM], spec.kind, self.key)
            upstream: GradiumStream = await self.mux.open(plan.setup)
        else:
            upstream = await self.app[GRADIUM].open_ws(spec.kind, plan.setup, self.key)
        c = Context(key, plan, scope, upstream, transcoder, self.active.get(key))
        c.message = message
        if schedule:
            c.words = WordBuffer(schedule)
        self.live.add(c)
        self.active[key] = c
        if wait_ready:
            try:
                c.ready = await asyncio.wait_for(upstream.recv(), self.app[SETTINGS].gradium.ready_timeout_s)
            except TimeoutError:
                raise GatewayError("upstream_unavailable", "Gradium did not answer in time") from None
        return c

    async def _text_parts(self, c: Context, key: str, fields: dict[str, Any]) -> Context:
        """`text` fields `parts` (a list of {text, segment}) and `segment`: text that belongs to a segment (a
        dialogue line's voice). When the segment changes, the context's current request ends (its `end`
        event is not shown) and the next one starts under the same key, spoken after it; its params are
        read from the context's first message with `segment` set to the new value. Every part but the
        last is pushed here; the last one goes on as the action's `text`."""
        parts = fields.pop("parts", None)
        if parts is None:
            parts = [{"text": fields.get("text"), "segment": fields.get("segment")}]
        if not isinstance(parts, list) or not parts or not all(isinstance(p, dict) for p in parts):
            raise GatewayError("invalid_message", "text parts must be a non-empty list of objects")
        for i, part in enumerate(parts):
            segment = part.get("segment")
            if segment is not None and c.segment is not None and segment != c.segment:
                c.continued = True
                await self._end_of_input(c)
                c = await self.open_context(key, {**(c.message or {}), "segment": segment}, wait_ready=False)
                self._start(c)
                await self._emit(c, c.plan.transform.on_action("continue", {}))
            if segment is not None:
                c.segment = segment
            text = part.get("text")
            if text is not None and not isinstance(text, str):
                raise GatewayError("invalid_message", "text must be a string")
            if i == len(parts) - 1:
                fields["text"] = text
            elif text and (ready := c.words.push(text)):
                await c.upstream.send({"type": "text", "text": ready})
        return c

    def _text_schedule(self, scope: dict[str, Any]) -> list[int] | None:
        """The route's `text_schedule` for a new context: character counts, or None (whole words at once)."""
        if self.wspec.text_schedule is None:
            return None
        value = self.wspec.text_schedule(scope)
        if value is None:
            return None
        ok = isinstance(value, list) and value and all(
            isinstance(x, int | float) and not isinstance(x, bool) and x > 0 for x in value)
        if not ok:
            raise GatewayError("invalid_request", "the chunk schedule must be a list of positive numbers")
        return [int(x) for x in value]

    def _start(self, c: Context) -> None:
        c.reader = asyncio.create_task(self._read(c), name=f"context:{c.key}")

    async def _read(self, c: Context) -> None:
        try:
            held = await self._wait_turn(c) if c.prev is not None else []
            transform = c.plan.transform
            if c.ready is not None:
                await self._emit(c, transform.on_gradium(c.ready))
            while True:
                msg = held.pop(0) if held else await c.upstream.recv()
                if isinstance(msg, BaseException):
                    raise msg
                if msg is None:
                    break
                await self._emit(c, await transform_gradium(transform, msg))
                if msg.get("type") == "end_of_stream":
                    break
            self.upstream_request_id = c.upstream.request_id
            if self.addons.context_end:
                self.addons.emit(ContextEnd(self.flow, c.key or None, "done", c.upstream.request_id))
        except asyncio.CancelledError:
            raise
        except GatewayError as err:
            if self.wspec.spec.context_errors == "report":
                try:
                    await self._context_error(c.key, err)
                except Exception as exc:  # the client is gone
                    self._abort(exc)
            else:
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
        if c.key not in self.active and not self.shared.get(c.key, True):
            del self.shared[c.key]  # the context is over (its transform left nothing for a next request)
        with contextlib.suppress(Exception):
            await c.upstream.close()
        if self.wspec.spec.on_end == "close" or (self.closing and not self.live):
            self._finish(self.wspec.spec.close_on_end)

    async def _wait_turn(self, c: Context) -> list[Any]:
        """Wait until the previous request under this context id is done (its output goes first).

        On a multiplexed Gradium socket, this request's messages are read meanwhile and held (returned,
        errors included, in order): a request waiting its turn must not fill its inbox and stall the
        shared socket, or the request it waits for could never finish."""
        prev = c.prev
        assert prev is not None
        if self.mux is None:
            await prev.finished.wait()
            return []
        held: list[Any] = []
        turn = asyncio.ensure_future(prev.finished.wait())
        nxt: asyncio.Future[Any] | None = None
        try:
            while True:
                nxt = asyncio.ensure_future(c.upstream.recv())
                done, _ = await asyncio.wait({turn, nxt}, return_when=asyncio.FIRST_COMPLETED)
                if nxt not in done:
                    nxt.cancel()
                    try:
                        held.append(await nxt)  # it may have completed meanwhile
                    except asyncio.CancelledError:
                        pass
                    except GatewayError as err:
                        held.append(err)
                    return held
                try:
                    msg = nxt.result()
                except GatewayError as err:
                    held.append(err)
                    await turn
                    return held
                held.append(msg)
                if msg is None or msg.get("type") == "end_of_stream":
                    await turn
                    return held
        finally:
            for f in (turn, nxt):
                if f is not None and not f.done():
                    f.cancel()

    async def _emit(self, c: Context, events: list[tuple[str, dict[str, Any]]]) -> None:
        for name, fields in events:
            if name == GRADIUM_EVENT:
                if not c.eos_sent:
                    await c.upstream.send(fields)
                continue
            if name == "end" and c.continued:
                continue  # the context's next request (another `segment`) ends it
            scope = c.scope.copy()
            scope.setdefault("sequence_id", self.sequence)
            rendered = render_event(self.route, scope, name, fields)
            if rendered is not None:
                await self._send(rendered)
            elif isinstance(fields.get("audio"), bytes) and fields["audio"]:
                await self.port.send_bytes(fields["audio"])
                self._count_out(fields["audio"])

    async def _send(self, rendered: Any) -> None:
        if isinstance(rendered, Messages):  # one event rendered as several messages (`$messages`)
            for item in rendered:
                await self._send(item)
            return
        data = orjson.dumps(rendered)
        await self.port.send_text(data)
        self._count_out(data)

    def _count_out(self, data: bytes) -> None:
        self.events_out += 1
        first = self.first_out is None
        if first:
            self.first_out = time.monotonic()
        if self.addons.client_output:
            self.addons.emit(ClientOutput(self.flow, data, len(data), time.monotonic(), first))
