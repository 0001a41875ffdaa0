"""A Gradium request on a WebSocket of its own (`GradiumWsStream`), pooled by `GradiumClient` (`gradium.py`).

Sends go out straight to the transport where they can (`gateway/wsframe.py`), and the request's reader may
take Gradium's messages where they are parsed (`listen`, `take`; `gateway/wsinbox.py`), with no task woken
per message.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Awaitable
from typing import Any, Protocol

import aiohttp
import orjson

from gateway.upstream import protocol
from gateway.upstream.errors import _CLOSED, UpstreamClosed, closed_error, malformed
from gateway.upstream.protocol import Message
from gateway.upstream.retire import Retirements
from gateway.upstream.stream import NOTED, GradiumStream
from gateway.wsframe import FrameWriter
from gateway.wsinbox import Later, Sink, inbox_of

MAX_MSG_SIZE = 16 * 1024 * 1024  # a Gradium message's (the sockets' `max_msg_size`)
# read on every message sent and received: `aiohttp.WSMsgType.TEXT` is a module lookup and then an enum class
# attribute, a slow lookup on Python 3.11 (`EnumType.__getattr__`)
_TEXT = aiohttp.WSMsgType.TEXT
_AUDIO_HEAD, _AUDIO_TAIL, _b64encode = protocol.AUDIO_HEAD, protocol.AUDIO_TAIL, protocol.b64encode
_loads = orjson.loads


class Pool(Protocol):
    """What a stream needs of its `GradiumClient`."""

    in_use: int
    retirements: Retirements

    def give_back(self, key: tuple[str, str], ws: aiohttp.ClientWebSocketResponse) -> None: ...

    async def connect(self, kind: Any, api_key: str) -> aiohttp.ClientWebSocketResponse: ...


class GradiumWsStream(GradiumStream):
    """One request on a Gradium socket of its own, which goes back to the client's pool when the
    request ends cleanly (`close_ws_on_eos: false`), so the next request skips the handshake."""

    REPLAY_LIMIT = 256 * 1024

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, client: Pool | None = None,
                 pool_key: tuple[str, str] | None = None, reused: bool = False) -> None:
        self.ws = ws
        self.client = client
        self.pool_key = pool_key
        self.ended = False
        # A pooled socket may have been closed by Gradium while idle; until the first answer, keep
        # what was sent so the request can be replayed once on a fresh socket.
        self._replay: list[bytes] | None = [] if reused else None
        self._replay_bytes = 0
        self._closed_here = False  # closed by the gateway itself: never a stale pooled socket to replay
        self._frames = FrameWriter(ws)
        self._inbox = inbox_of(ws)

    async def send(self, msg: Message) -> None:
        await self._send(protocol.dumps(msg))

    def send_audio(self, pcm: bytes) -> Awaitable[None]:  # the coroutine of `_send`: one frame fewer per chunk
        return self._send(protocol.audio_payload(pcm))

    def write_audio(self, pcm: bytes) -> Awaitable[None] | None:
        if self._replay is None and not self._closed_here and not self.ws.closed:
            # the usual case: the frame goes out now, from here (`_send` does the rest's bookkeeping)
            sent = self._frames.write_masked_text(_AUDIO_HEAD, _b64encode(pcm), _AUDIO_TAIL)
            if sent is True:
                return None
            if sent is not False:
                return sent  # written; the transport asks us to wait for it to drain
        return self._send(protocol.audio_payload(pcm))

    def write(self, msg: Message) -> Awaitable[None] | None:
        payload = protocol.dumps(msg)
        if self._replay is None and not self._closed_here and not self.ws.closed:
            sent = self._frames.send(payload)
            if sent is True:
                return None
            if sent is not False:
                return sent
        return self._send(payload)

    async def _send(self, payload: bytes) -> None:
        if self._closed_here:
            raise UpstreamClosed("the Gradium session was ended by the gateway")
        if self.ws.closed and self._replay is None:
            raise UpstreamClosed()
        if self._replay is not None:
            self._replay.append(payload)
            self._replay_bytes += len(payload)
            if self._replay_bytes > self.REPLAY_LIMIT:
                self._replay = None
        if not self.ws.closed:
            await self.ws.send_frame(payload, _TEXT)  # UTF-8 already: no str round trip

    async def _reconnect(self) -> None:
        assert self.client is not None and self.pool_key is not None and self._replay is not None
        replay, self._replay = self._replay, None
        with contextlib.suppress(Exception):
            await self.ws.close()
        self.ws = await self.client.connect(self.pool_key[0], self.pool_key[1])  # type: ignore[arg-type]
        self._frames = FrameWriter(self.ws)
        self._inbox = inbox_of(self.ws)
        for payload in replay:
            await self.ws.send_frame(payload, aiohttp.WSMsgType.TEXT)

    # -- inline reading (`gateway/wsinbox.py`): the request's reader handles messages where they are parsed

    def can_listen(self) -> bool:
        return self._inbox is not None

    def listen(self, sink: Sink | None, context: contextvars.Context | None = None) -> None:
        """Messages that come while `recv` waits go to `sink`, run in `context` (None: to `recv`); set only
        with nothing queued, by the one reading this stream."""
        if self._inbox is not None and (sink is None or not self._closed_here):
            self._inbox.listen(sink, context)

    def take(self, msg: Any) -> Message | None:
        """A message parsed where it came in, for a sink: what `recv` would return, when that is a plain
        message (not `ready`, `end_of_stream` or `error`, which `recv` notes, nor anything it raises for or
        skips); None: leave it to `recv`."""
        if msg.type is not _TEXT:  # (a closed stream has no sink: `_mark_closed`)
            return None
        try:
            data = _loads(msg.data)
        except orjson.JSONDecodeError:
            return None
        if data.__class__ is not dict:
            return None
        mtype = data.get("type")
        if mtype.__class__ is str and mtype in NOTED:
            return None
        self._replay = None
        return data

    async def recv(self) -> Message | None:
        while not self.ended:
            if self._closed_here:  # its retirement may be reading the socket now (aiohttp allows one reader)
                raise UpstreamClosed("the Gradium session was ended by the gateway")
            try:
                msg = await self.ws.receive()
            except (aiohttp.ClientError, OSError):
                msg = aiohttp.WSMessage(aiohttp.WSMsgType.ERROR, None, None)
            if msg.type is _TEXT:
                self._replay = None
                # `protocol.parse` and `_note`, inline: once per Gradium message (a `step` every 80 ms)
                try:
                    data = orjson.loads(msg.data)
                except orjson.JSONDecodeError:
                    raise malformed() from None
                if data.__class__ is not dict:
                    raise malformed()
                mtype = data.get("type")
                return self._note(data) if mtype.__class__ is str and mtype in NOTED else data
            later = msg.data
            if later.__class__ is Later:  # what this stream's sink could not finish
                if later.owner is self:
                    return later  # type: ignore[no-any-return]
                later.drop()  # left by the socket's last user
                continue
            if msg.type in _CLOSED:
                if self._closed_here:
                    raise UpstreamClosed("the Gradium session was ended by the gateway")
                if self._replay is not None:
                    await self._reconnect()
                    continue
                raise closed_error(self.ws, msg)
            # binary and ping frames are not part of the protocol
        return None

    def close_now(self) -> bool:
        if self._closed_here:
            return True
        pooled = self.ended and self.client is not None and self.pool_key is not None
        if not self.ws.closed and not pooled:
            return False  # a request still talking: its close is a handshake with Gradium (`close`)
        self._mark_closed()
        if not self.ws.closed and self.client is not None and self.pool_key is not None:
            self.client.give_back(self.pool_key, self.ws)
        return True

    def _mark_closed(self) -> None:
        self._closed_here = True
        if self._inbox is not None:
            self._inbox.sink = None  # the socket may serve another request next: nothing more for this one
        if self.client is not None:
            self.client.in_use -= 1

    async def close(self) -> None:
        if self.close_now():
            return
        self._mark_closed()
        if (self.client is not None and self.pool_key is not None and self.request_id is not None
                and not self.failed and self.client.retirements.retire(self.pool_key, self.ws)):
            return  # Gradium ends the request in the background; the socket then goes back to the pool
        await self.ws.close()
