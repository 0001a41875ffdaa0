"""Client -> Gradium: a WebSocket session's client frames become actions on its contexts.

Frames are decoded (JSON text, or binary audio), matched against the route's `inbound` rules (first
match wins), and performed: `text` (re-cut on word boundaries or a chunk schedule), `audio` (transcoded,
base64 to Gradium), `flush`, `end_of_stream`, `keepalive`, `close` (finish every context, then close),
`clear` (drop a context now), `reply`, `control`, `error`. The Gradium -> client half, and the contexts
themselves, are in `ws.py`; `WsSession` combines both.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import time
from typing import TYPE_CHECKING, Any

import orjson

from gateway.dialects.common import error_scope, offload, render_event
from gateway.errors import GatewayError
from gateway.events import ActionTaken, ClientFrame, ContextEnd
from gateway.session.port import BINARY, TEXT, TOO_BIG, Inbound

if TYPE_CHECKING:
    from gateway.dialects.ws import Context


MAX_REMEMBERED = 4096  # per socket: cancelled context ids remembered, contexts with shared state kept


class ClientGone(Exception):
    """The client socket closed or failed: nothing more to read."""


class ClientInput:
    """Mixin of `WsSession`: everything that reads the client and acts on Gradium."""

    def _decode(self, msg: Inbound) -> Any:
        if msg.kind == TEXT:
            try:
                return orjson.loads(msg.data)
            except orjson.JSONDecodeError:
                if self.wspec.plain_text:  # bare text commands (`finalize`), matched by list rules
                    return msg.data.strip()
                raise GatewayError("invalid_message", "Could not parse message: expected JSON") from None
        if msg.kind == BINARY:
            if self.wspec.spec.text_frames_only:
                raise GatewayError("invalid_message", "Binary frames are not accepted on this socket")
            return msg.data
        if msg.kind == TOO_BIG:
            raise GatewayError("payload_too_large", "Message is too large")
        raise ClientGone()

    async def _client_loop(self, first: Any) -> None:
        if first is not None:
            await self._handle_reporting(first)
        while True:
            self.handling = None
            msg = await self.port.receive()
            if self.addons.client_frame and msg.kind in (TEXT, BINARY):
                self.addons.emit(ClientFrame(self.flow, msg.data, time.monotonic()))
            data = self._decode(msg)
            self.frames_in += 1
            await self._handle_reporting(data)

    async def _handle_reporting(self, data: Any) -> None:
        try:
            await self._handle(data)
        except GatewayError as err:
            # `context_errors: report`: a failure tied to the message's context ends only that context
            if self.wspec.spec.context_errors != "report" or self.handling is None:
                raise
            await self._context_error(self.handling, err)

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
        fields: dict[str, Any] = {}
        if rule.fields is not None:
            scope = self._session_scope()
            scope["message"] = data
            fields = rule.fields(scope) or {}
        key = "" if fields.get("context") is None else str(fields["context"])
        if "context" in fields:
            self.handling = key
        if self.addons.action_taken:
            self.addons.emit(ActionTaken(self.flow, action, key or None))
        if action == "error":
            raise GatewayError(rule.error or "invalid_message", rule.message or "Unexpected message")
        if action == "keepalive" or not self.accepting:
            return
        if action == "close":
            await self._close_gracefully()
            return
        if action == "clear":
            await self._clear(key)
            return
        if action == "reply":
            scope = self._session_scope()
            scope["message"] = data
            rendered = render_event(self.route, scope, rule.event or "", fields)
            if rendered is not None:
                await self._send(rendered)
            return
        if action == "control":
            c = self.active.get(key)
            if c is not None and not c.eos_sent:
                await self._emit(c, c.plan.transform.on_action("control", fields))
            return
        c = self.active.get(key)
        if c is None or c.eos_sent:
            if action == "end_of_stream":
                return  # nothing open under that id
            if key in self.cleared:
                raise GatewayError("invalid_message", f"Context {key} was cancelled; start a new context_id")
            c = await self.open_context(key, data if isinstance(data, dict) else None, wait_ready=False)
            self._start(c)
        if action == "text" and ("parts" in fields or fields.get("segment") is not None):
            c = await self._text_parts(c, key, fields)
        if action == "audio":
            fields["audio"] = await self._audio(c, data if isinstance(data, bytes | bytearray) else fields.get("audio"))
            if fields.get("flush"):  # audio and a flush in one message (ElevenLabs `commit: true`)
                await self._emit(c, c.plan.transform.on_action(action, fields))
                await self._flush(c)
                return
        elif action == "text":
            text = fields.get("text")
            if text is not None and not isinstance(text, str):
                raise GatewayError("invalid_message", "text must be a string")
            ready = c.words.push(text or "", bool(fields.get("trigger")))
            if ready:
                await c.upstream.send({"type": "text", "text": ready})
            if fields.get("end"):
                # text and the end of this request's input in one message (Cartesia `continue: false`, or a
                # flush that the mapping turns into the end of a request); the transform hears it first
                await self._emit(c, c.plan.transform.on_action(action, fields))
                await self._end_of_input(c)
                return
            if fields.get("flush"):
                await self._flush(c)
            elif text and c.plan.kind == "tts":
                await self._buffer_delay(c, fields.get("flush_after_ms", self.wspec.spec.flush_after_ms))
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
        if chunk is not None and not isinstance(chunk, str | bytes | bytearray):
            raise GatewayError("invalid_message", "audio must be a base64 string")
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

    async def _buffer_delay(self, c: Context, ms: Any) -> None:
        """`flush_after_ms` (Cartesia `max_buffer_delay_ms`): text that waited this long for more text is
        flushed to Gradium (its inline flush), so a pause in the client's input never holds audio back.
        0 flushes with every message; None leaves the buffering to Gradium."""
        if c.flush_timer is not None:
            c.flush_timer.cancel()
            c.flush_timer = None
        if not isinstance(ms, int | float) or isinstance(ms, bool) or ms < 0:
            return
        if ms == 0:
            await self._flush(c)
            return
        c.flush_timer = asyncio.get_running_loop().call_later(min(float(ms), 60_000.0) / 1000, self._timed_flush, c)

    def _timed_flush(self, c: Context) -> None:
        c.flush_timer = None
        if c.eos_sent or c not in self.live:
            return
        task = asyncio.get_running_loop().create_task(self._flush(c))
        self.background.add(task)
        task.add_done_callback(lambda t: (self.background.discard(t), t.cancelled() or t.exception()))

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
        await self._drop(key)
        if self.addons.context_end:
            self.addons.emit(ContextEnd(self.flow, key or None, "cleared"))
        if self.wspec.spec.reject_cleared:
            self.cleared[key] = None
            if len(self.cleared) > MAX_REMEMBERED:
                del self.cleared[next(iter(self.cleared))]
        scope = self._session_scope()
        scope["context_id"] = key or None
        rendered = render_event(self.route, scope, "cleared", {})
        if rendered is not None:
            await self._send(rendered)

    async def _drop(self, key: str) -> None:
        """Every request under `key` stops now: readers cancelled, upstreams closed, shared state gone.
        With `on_end: keep`, earlier requests under the key may still be sending audio: they go too."""
        self.active.pop(key, None)
        me = asyncio.current_task()
        for c in [x for x in self.live if x.key == key]:
            self.live.discard(c)
            if c.reader is not None and c.reader is not me:
                c.reader.cancel()
            with contextlib.suppress(Exception):
                await c.upstream.close()
            c.finished.set()
        self.shared.pop(key, None)

    async def _context_error(self, key: str, err: GatewayError) -> None:
        """`context_errors: report`: the error message carries the context id; only that context ends."""
        if self.addons.context_end:
            self.addons.emit(ContextEnd(self.flow, key or None, "error"))
        await self._drop(key)
        if self.mux is not None and self.mux.failure is not None:
            # the shared Gradium socket is gone (its other requests got the error too): the next
            # context opens a fresh one
            with contextlib.suppress(Exception):
                await self.mux.close()
            self.mux = None
        tpl = self.wspec.error_message or self.ctx.mapping.errors.ws_message
        if tpl is not None and not self.port.closed:
            scope = error_scope(self.ctx, err)
            scope["context_id"] = key or None
            code = self.wspec.spec.error_codes.get(err.kind)
            if code is not None:
                scope["error"]["code"] = code
            await self._send(tpl(scope))
        if self.closing and not self.live:
            self._finish(1000)
