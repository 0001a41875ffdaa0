"""WebSocket front end: `/api/speech/tts` and `/api/speech/asr`, multiplexed by `client_req_id`.

One reader task routes client messages to per-request sessions; each session runs as its own
task with a bounded input queue, so pipelined input (text before `ready`) simply waits in the
queue, and several requests on one socket interleave their output freely.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any, Literal

from aiohttp import WSMsgType, web

from gateway.emulator.auth import key_id
from gateway.emulator.faults import FAULTS, Action, FaultGate
from gateway.emulator.protocol import (
    AUTH_FAILED,
    INTERNAL,
    POLICY,
    PROTOCOL_ERROR,
    SESSION_NOT_FOUND,
    UNSUPPORTED,
    GradiumError,
    ReqId,
    SttSetup,
    TtsSetup,
    client_req_id_of,
    new_request_id,
    parse_stt_setup,
    parse_tts_setup,
    stt_ready,
    tts_ready,
)
from gateway.emulator.state import STATE, EmulatorState
from gateway.emulator.stats import STATS, Stats
from gateway.emulator.stt import SttEngine
from gateway.emulator.stt_replay import REPLAY, ReplayingEngine, decode_audio
from gateway.emulator.tts import Pacer, TtsEngine
from gateway.emulator.voices import DEFAULT_VOICE_ID
from gateway.upstream import protocol as wire

log = logging.getLogger(__name__)

Kind = Literal["tts", "asr"]
Message = dict[str, Any]
INPUT_QUEUE = 256  # per request: backpressure on the socket rather than unbounded memory


class ConnectionClosed(Exception):
    """The socket is gone, failed or dropped on purpose: the session stops quietly."""


class WsConnection:
    def __init__(self, request: web.Request, ws: web.WebSocketResponse, gate: FaultGate, key: str) -> None:
        self.request = request
        self.ws = ws
        self.gate = gate
        self.key = key
        self.state: EmulatorState = request.app[STATE]
        self.stats: Stats = request.app[STATS]
        self.sessions: dict[ReqId, Session] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.closed = False

    async def send(self, msg: Message) -> None:
        if self.closed or self.ws.closed:
            raise ConnectionClosed
        action = await self.gate.before(msg["type"])
        if action is Action.DROP:
            self.drop()
            raise ConnectionClosed
        if action is Action.ERROR:
            assert self.gate.faults is not None
            await self.fail(self.gate.faults.error_code, self.gate.faults.error_message, msg.get(wire.CLIENT_REQ_ID))
            raise ConnectionClosed
        try:
            await self.ws.send_frame(wire.dumps(msg), WSMsgType.TEXT)
        except (ConnectionError, RuntimeError) as exc:
            self.closed = True
            raise ConnectionClosed from exc
        self.gate.sent += 1
        self.stats.messages_out += 1
        self.state.usage.egress_messages += 1

    async def fail(self, code: int, message: str, client_req_id: ReqId = None) -> None:
        """The documented failure: an error frame, then a close carrying the same code."""
        if self.closed or self.ws.closed:
            return
        self.closed = True
        self.stats.errors_sent += 1
        try:
            await self.ws.send_frame(wire.dumps(wire.error(code, message, client_req_id)), WSMsgType.TEXT)
            await self.ws.close(code=code, message=message.encode()[:123])
        except (ConnectionError, RuntimeError):
            pass

    async def close(self) -> None:
        if self.closed or self.ws.closed:
            return
        self.closed = True
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.close(code=1000)

    def drop(self) -> None:
        """Abrupt TCP close, no close frame: what a crashed server or a proxy timeout looks like."""
        self.closed = True
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    # -- routing ---------------------------------------------------------------------------------

    def start(self, kind: Kind, msg: Message, rid: ReqId) -> None:
        if rid in self.sessions:
            raise GradiumError(PROTOCOL_ERROR, f"Session already active ({rid})")
        settings = self.state.settings
        session: Session
        if kind == "tts":
            session = TtsSession(self, rid, parse_tts_setup(msg, self.state.voices, DEFAULT_VOICE_ID))
        else:
            session = SttSession(self, rid, parse_stt_setup(msg, settings.default_delay_in_frames))
        self.stats.record_setup(
            f"speech/{kind}", msg, key_id=key_id(self.key), source=self.request.headers.get("x-api-source")
        )
        self.state.usage.sessions += 1
        self.sessions[rid] = session
        task = asyncio.create_task(session.run())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def route(self, msg: Message, rid: ReqId) -> None:
        session = self.sessions.get(rid)
        if session is None and rid is None and len(self.sessions) == 1:
            # The SDK's tts_realtime(client_req_id=...) then send_text(text) omits the id on input;
            # with one request in flight there is no ambiguity.
            session = next(iter(self.sessions.values()))
        if session is None:
            raise GradiumError(PROTOCOL_ERROR, SESSION_NOT_FOUND)
        await session.queue.put(msg)

    def forget(self, session: Session) -> None:
        if self.sessions.get(session.rid) is session:
            del self.sessions[session.rid]


class Session:
    """One request on a socket: setup -> ready -> input/output -> end_of_stream."""

    def __init__(self, conn: WsConnection, rid: ReqId, close_on_eos: bool) -> None:
        self.conn = conn
        self.rid = rid
        self.close_on_eos = close_on_eos
        self.queue: asyncio.Queue[Message] = asyncio.Queue(maxsize=INPUT_QUEUE)
        self.request_id = new_request_id()

    async def send(self, msg: Message) -> None:
        if self.rid is not None:
            msg[wire.CLIENT_REQ_ID] = self.rid
        await self.conn.send(msg)

    async def send_all(self, msgs: Iterable[Message]) -> None:
        for msg in msgs:
            await self.send(msg)

    async def run(self) -> None:
        try:
            await self._run()
            # Leave the routing table before end_of_stream is out: a client that reuses the id
            # right after seeing it must not hit "Session already active".
            self.conn.forget(self)
            await self.send(wire.end_of_stream())
            if self.close_on_eos:
                await self.conn.close()
        except GradiumError as exc:
            await self.conn.fail(exc.code, exc.message, self.rid)
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("emulator session failed")
            await self.conn.fail(INTERNAL, "Internal server error", self.rid)
        finally:
            self.conn.forget(self)

    async def _run(self) -> None:
        raise NotImplementedError

    @staticmethod
    def unsupported(msg: Message) -> GradiumError:
        return GradiumError(UNSUPPORTED, f"Unsupported message type: {msg.get('type')}")

    async def flushed(self, msg: Message) -> None:
        # The flush_id type differs between clients (int, string): echo exactly what came in.
        await self.send(wire.flushed(msg["flush_id"]) if "flush_id" in msg else wire.flushed())


class TtsSession(Session):
    def __init__(self, conn: WsConnection, rid: ReqId, setup: TtsSetup) -> None:
        super().__init__(conn, rid, setup.close_ws_on_eos)
        self.setup = setup

    async def _run(self) -> None:
        settings = self.conn.state.settings
        engine = TtsEngine(self.setup.audio_format, self.setup.voice, self.setup.rewrites)
        await self.send(
            tts_ready(
                self.request_id,
                self.setup,
                engine.sample_rate,
                model_ext=settings.model_ext,
                residency=settings.residency,
            )
        )
        pacer = Pacer.for_settings(settings)
        try:
            while True:
                msg = await self.queue.get()
                kind = msg["type"]
                if kind == wire.TEXT:
                    text = msg.get("text")
                    if not isinstance(text, str):
                        raise GradiumError(UNSUPPORTED, "text must be a string")
                    await self._out(engine.feed_text(text), pacer)
                elif kind == wire.FLUSH:
                    await self._out(engine.flush(), pacer)
                    await self.flushed(msg)
                elif kind == wire.END_OF_STREAM:
                    await self._out(engine.finish(), pacer)
                    return
                else:
                    raise self.unsupported(msg)
        finally:
            self.conn.state.usage.tts_characters += engine.characters

    async def _out(self, msgs: Iterable[Message], pacer: Pacer) -> None:
        for msg in msgs:
            await pacer.wait(msg)
            await self.send(msg)


class SttSession(Session):
    def __init__(self, conn: WsConnection, rid: ReqId, setup: SttSetup) -> None:
        super().__init__(conn, rid, setup.close_ws_on_eos)
        self.setup = setup

    async def _run(self) -> None:
        cache = self.conn.request.app.get(REPLAY)
        engine: SttEngine | ReplayingEngine = SttEngine(self.setup) if cache is None else cache.engine(self.setup)
        await self.send(stt_ready(self.request_id, self.setup, residency=self.conn.state.settings.residency))
        try:
            while True:
                msg = await self.queue.get()
                kind = msg["type"]
                if kind == wire.AUDIO:
                    if isinstance(engine, ReplayingEngine):
                        await self.send_all(engine.feed_b64(msg.get("audio")))
                    else:
                        await self.send_all(engine.feed_audio(decode_audio(msg.get("audio"))))
                elif kind == wire.FLUSH:
                    await self.send_all(engine.flush())
                    await self.flushed(msg)
                elif kind == wire.END_OF_STREAM:
                    await self.send_all(engine.finish())
                    return
                else:
                    raise self.unsupported(msg)
                # Decoding is CPU work; let other requests on the loop run between messages.
                await asyncio.sleep(0)
        finally:
            self.conn.state.usage.stt_seconds += engine.audio_seconds


async def _read(conn: WsConnection, kind: Kind) -> None:
    stats = conn.stats
    async for raw in conn.ws:
        if raw.type == WSMsgType.BINARY:
            await conn.fail(UNSUPPORTED, "Binary frames are not supported: send JSON text messages")
            return
        if raw.type != WSMsgType.TEXT:
            continue
        stats.messages_in += 1
        conn.state.usage.ingress_messages += 1
        rid: ReqId = None
        try:
            try:
                msg = wire.parse(raw.data)
            except wire.NotJson:
                raise GradiumError(UNSUPPORTED, "Invalid JSON message") from None
            except wire.Malformed:
                msg = {}
            if not isinstance(msg.get("type"), str):
                raise GradiumError(UNSUPPORTED, "A message must be a JSON object with a string `type`")
            rid = client_req_id_of(msg)
            if msg["type"] == wire.SETUP:
                conn.start(kind, msg, rid)
            else:
                await conn.route(msg, rid)
        except GradiumError as exc:
            await conn.fail(exc.code, exc.message, rid)
            return
        if conn.closed:
            return


async def _serve(request: web.Request, kind: Kind) -> web.StreamResponse:
    app = request.app
    state, stats = app[STATE], app[STATS]
    gate = FaultGate(app[FAULTS].take(request.path, "ws"), stats)
    if gate.faults is not None and gate.faults.ws_reject_status is not None:
        return web.Response(
            status=gate.faults.ws_reject_status, text=gate.faults.http_error_message, content_type="text/plain"
        )
    ws = web.WebSocketResponse(
        max_msg_size=state.settings.max_message_bytes,
        heartbeat=state.settings.heartbeat_s,
        compress=False,
    )
    await ws.prepare(request)
    stats.ws_connections += 1
    stats.ws_active += 1
    key = state.auth.authenticate(request, allow_token=True)
    conn = WsConnection(request, ws, gate, key or "")
    try:
        if key is None:
            # Auth failure after the upgrade, as an error frame and a 1008 close (DOCS:errors).
            stats.auth_failures += 1
            await conn.fail(POLICY, AUTH_FAILED)
            return ws
        await _read(conn, kind)
        # Sessions may still be producing after the client's last message; let them finish unless
        # the socket is gone.
        while conn.tasks and not ws.closed:
            await asyncio.wait(set(conn.tasks), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stats.ws_active -= 1
        for task in list(conn.tasks):
            task.cancel()
        if conn.tasks:
            await asyncio.gather(*conn.tasks, return_exceptions=True)
    return ws


async def tts_ws(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "tts")


async def asr_ws(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "asr")
