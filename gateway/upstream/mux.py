"""Several Gradium requests over one Gradium WebSocket (`client_req_id`, `close_ws_on_eos: false`).

A client socket with many contexts (ElevenLabs multi-stream-input, Cartesia's TTS socket) gets one
upstream socket instead of one per context: no handshake per context, one connection against the
org's concurrency. Each request is a `MuxStream` with its own inbox; one reader task routes Gradium's
messages by `client_req_id`. Gradium has no per-request abort, so closing a stream early only stops
delivering its messages (what Pipecat does for interrupted contexts). An error without a request id, or
the socket ending, fails every request on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable

import aiohttp

from gateway.errors import GatewayError
from gateway.upstream import protocol
from gateway.upstream.errors import _CLOSED, closed_error, error_from, malformed
from gateway.upstream.gradium import GradiumClient, GradiumStream, Kind
from gateway.upstream.protocol import Message

INBOX_SIZE = 512  # messages a slow client context may lag behind before the socket stops being read


class MuxStream(GradiumStream):
    def __init__(self, mux: GradiumMux, rid: str) -> None:
        self.mux = mux
        self.rid = rid
        self.inbox: asyncio.Queue[Message | BaseException] = asyncio.Queue(INBOX_SIZE)
        self.ended = False
        self.closed = False
        self.eos_sent = False

    async def send(self, msg: Message) -> None:
        msg[protocol.CLIENT_REQ_ID] = self.rid
        if msg.get("type") == protocol.END_OF_STREAM:
            self.eos_sent = True
        await self.mux.send(msg)

    def send_audio(self, pcm: bytes) -> Awaitable[None]:
        return self.mux.send_payload(protocol.audio_payload(pcm, self.rid))

    async def recv(self) -> Message | None:
        if self.ended:
            return None
        item = await self.inbox.get()
        if isinstance(item, BaseException):
            self.ended = True
            raise item
        return self._note(item)

    def _owes_end(self) -> bool:
        live = self.mux.streams.get(self.rid) is self  # Gradium has not ended or failed it
        return live and not self.closed and not self.eos_sent and self.mux.ws is not None and not self.mux.ws.closed

    def close_now(self) -> bool:
        if self._owes_end():
            return False
        self.closed = True
        self.mux.forget(self)
        return True

    async def close(self) -> None:
        if self._owes_end():
            # Dropped before its input ended (a cancelled context): Gradium has no abort, but ending the
            # input lets the request finish instead of lingering on the shared socket until it closes.
            with contextlib.suppress(Exception):
                await self.mux.send(protocol.end_of_stream(self.rid))
        self.closed = True
        self.mux.forget(self)


class GradiumMux:
    """One upstream socket (opened on first use) shared by the requests of one client socket."""

    def __init__(self, client: GradiumClient, kind: Kind, api_key: str) -> None:
        self.client = client
        self.kind = kind
        self.api_key = api_key
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.streams: dict[str, MuxStream] = {}
        self.ids = itertools.count(1)
        self.reader: asyncio.Task[None] | None = None
        self.failure: GatewayError | None = None
        self._connecting = asyncio.Lock()
        self._closing: asyncio.Future[None] | None = None  # an idle socket being closed

    async def connect(self) -> None:
        """Open the shared socket now (before the first request needs it); errors wait for `open`."""
        async with self._connecting:
            if self.ws is None and self.failure is None:
                self.ws = await self.client.connect(self.kind, self.api_key)
                self.reader = asyncio.create_task(self._read(self.ws), name="gradium-mux")

    async def open(self, setup: Message) -> MuxStream:
        if self.failure is not None:
            raise self.failure
        async with self._connecting:
            if self.ws is None:
                self.ws = await self.client.connect(self.kind, self.api_key)
                self.reader = asyncio.create_task(self._read(self.ws), name="gradium-mux")
        stream = MuxStream(self, f"r{next(self.ids)}")
        self.streams[stream.rid] = stream
        await stream.send(protocol.setup(setup, close_ws_on_eos=False))
        return stream

    async def send(self, msg: Message) -> None:
        await self.send_payload(protocol.dumps(msg))

    async def send_payload(self, payload: bytes) -> None:
        """One message, already serialized (UTF-8 JSON)."""
        if self.ws is None or self.ws.closed:
            raise self.failure or GatewayError("upstream_unavailable", "Gradium connection closed")
        await self.ws.send_frame(payload, aiohttp.WSMsgType.TEXT)

    def forget(self, stream: MuxStream) -> None:
        if self.streams.get(stream.rid) is stream:
            del self.streams[stream.rid]

    def _route(self, data: Message) -> MuxStream | None:
        rid = data.get(protocol.CLIENT_REQ_ID)
        if rid is not None:
            return self.streams.get(str(rid))
        return next(iter(self.streams.values())) if len(self.streams) == 1 else None

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    if msg.type in _CLOSED:
                        break
                    continue
                try:
                    data = protocol.parse(msg.data)
                except protocol.Malformed:
                    raise malformed() from None
                stream = self._route(data)
                mtype = data.get("type")
                if mtype == protocol.ERROR:
                    err = error_from(data)
                    if stream is None:
                        raise err
                    await stream.inbox.put(err)
                    self.forget(stream)
                    continue
                if stream is None:
                    continue  # a request the client already dropped
                await stream.inbox.put(data)
                if mtype == protocol.END_OF_STREAM:
                    self.forget(stream)
            if not self.streams and ws.close_code in (None, 1000):
                self.ws = None  # an idle socket Gradium closed: reconnect on the next request
                return
            raise closed_error(ws, aiohttp.WSMessage(aiohttp.WSMsgType.CLOSE, ws.close_code, None))
        except GatewayError as err:
            self._fail(err)
        except (aiohttp.ClientError, OSError):
            self._fail(GatewayError("upstream_unavailable", "Gradium connection failed"))

    def _fail(self, err: GatewayError) -> None:
        if not self.streams:
            # an idle socket (e.g. opened ahead of the first request) failed or was closed by Gradium:
            # nothing was lost, the next request opens a new one
            ws, self.ws = self.ws, None
            if ws is not None and not ws.closed:
                self._closing = asyncio.ensure_future(ws.close())  # awaited by `close`
                self._closing.add_done_callback(lambda f: f.cancelled() or f.exception())
            return
        self.failure = err
        for stream in list(self.streams.values()):
            if stream.inbox.full():  # the error must get through even to a lagging reader
                stream.inbox.get_nowait()
            stream.inbox.put_nowait(err)
        self.streams.clear()

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            try:
                await self.reader
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # the caller is being cancelled too: never swallow that
            except Exception:  # its failure was handed to every stream already
                pass
        if self._closing is not None:
            await asyncio.gather(self._closing, return_exceptions=True)
        if self.ws is not None and not self.ws.closed:
            await self.ws.close()
