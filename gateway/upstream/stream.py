"""A Gradium request as the gateway sees it (`GradiumStream`), and its REST form.

Both transports are the same stream (send Gradium messages, receive parsed Gradium messages), because
REST NDJSON carries the same message types as the WebSocket; `gradium.py` has the socket form and the
client that opens both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any, Literal

import aiohttp

from gateway.errors import GatewayError
from gateway.upstream import protocol
from gateway.upstream.errors import error_from, malformed
from gateway.upstream.protocol import Message

Kind = Literal["tts", "asr"]
NOTED = frozenset((protocol.READY, protocol.END_OF_STREAM, protocol.ERROR))  # the types `_note` acts on


class GradiumStream:
    """One Gradium request: send messages, receive parsed messages; `None` means finished."""

    request_id: str | None = None
    ended: bool = False
    failed: bool = False  # Gradium sent an error

    def _note(self, data: Message) -> Message:
        """Remember Gradium's request id and whether the request is over; an `error` raises its GatewayError."""
        mtype = data.get("type")
        if mtype == protocol.READY:
            self.request_id = data.get("request_id")
        elif mtype == protocol.END_OF_STREAM:
            self.ended = True
        elif mtype == protocol.ERROR:
            self.failed = True
            raise error_from(data)
        return data

    async def send(self, msg: Message) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    async def send_audio(self, pcm: bytes) -> None:
        """An `audio` message carrying `pcm` (once per client audio chunk: a stream on a socket sends it
        as prebuilt bytes)."""
        await self.send(protocol.audio(pcm))

    def write(self, msg: Message) -> Awaitable[None] | None:
        """`send`, with no coroutine when the frame can go out at once (as `write_audio`)."""
        return self.send(msg)

    def write_audio(self, pcm: bytes) -> Awaitable[None] | None:
        """`send_audio`, with no coroutine when the frame can go out at once: None when it is sent, else
        what to await (the send, or the socket's drain). Once per client audio chunk."""
        return self.send_audio(pcm)

    async def recv(self) -> Message | None:  # pragma: no cover - interface
        raise NotImplementedError

    # Inline reading (`gateway/wsinbox.py`), for streams on a socket of their own that has an inbox: the
    # request's reader sets a sink (`listen`) while it waits in `recv` with nothing queued, and the sink
    # reads each message with `take` as it is parsed (None: leave it to `recv`).

    def can_listen(self) -> bool:
        return False

    def listen(self, sink: Any, context: Any = None) -> None:
        return None

    def take(self, msg: Any) -> Message | None:
        return None

    async def close(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def close_now(self) -> bool:
        """Close at once when that takes no I/O (the usual end of a request): True if it is closed. A
        caller that gets False awaits `close`; one that gets True needs no task to release the stream."""
        return False

    async def __aiter__(self) -> AsyncIterator[Message]:
        while True:
            msg = await self.recv()
            if msg is None:
                return
            yield msg


class GradiumRestStream(GradiumStream):
    """REST speech endpoint read as NDJSON; the whole input was sent with the request."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp
        self.ended = False

    async def send(self, msg: Message) -> None:
        raise GatewayError("internal", "REST sessions take all their input up front")

    async def recv(self) -> Message | None:
        if self.ended:
            return None
        while True:
            try:
                line = await self.resp.content.readline()
            except aiohttp.ClientError:
                raise GatewayError("upstream_unavailable", "Gradium connection failed mid-stream") from None
            if not line:
                self.ended = True
                return protocol.end_of_stream()
            line = line.strip()
            if not line:
                continue
            try:
                return self._note(protocol.parse(line))  # NDJSON lines are the WS messages
            except protocol.Malformed:
                raise malformed() from None

    def close_now(self) -> bool:
        self.resp.release()
        return True

    async def close(self) -> None:
        self.resp.release()
