"""The session's client, behind a port: an aiohttp socket in production, a capture port with no socket.

A port gives the session the client's frames (`receive`) and takes what the session sends (`send_text`,
`send_bytes`, `close`). `AiohttpPort` wraps a `web.WebSocketResponse`. `CapturePort` is a client with no
socket: frames are fed in by code (`feed_text`, `feed_bytes`, `feed_close`), and what the session sends
is kept in `frames` in order (and passed to `on_frame`, if given) with the close code and reason; a
refusal before the upgrade lands in `refusal`. Shadow legs and headless tests use it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import WSMessage, WSMsgType, web

from gateway.wsframe import BINARY as BINARY_OPCODE
from gateway.wsframe import TEXT as TEXT_OPCODE
from gateway.wsframe import FrameWriter
from gateway.wsinbox import Inbox

TEXT, BINARY, CLOSED, TOO_BIG = "text", "binary", "closed", "too_big"


@dataclass(slots=True, frozen=True)
class Inbound:
    """One thing read from the client: a text or binary frame, its close, or a frame over the size limit."""

    kind: str  # TEXT | BINARY | CLOSED | TOO_BIG
    data: str | bytes = b""


@dataclass(slots=True, frozen=True)
class Refusal:
    """An HTTP answer instead of the upgrade (Deepgram-style refusals)."""

    status: int
    headers: dict[str, str]
    body: bytes


class ClientPort(Protocol):
    closed: bool

    async def receive(self, timeout: float | None = None) -> Inbound: ...

    def send_text(self, data: bytes) -> Awaitable[None]: ...

    def send_bytes(self, data: bytes) -> Awaitable[None]: ...

    async def close(self, code: int, message: bytes = b"") -> None: ...


# read once per client frame: an enum class attribute is a slow lookup on Python 3.11 (`EnumType.__getattr__`)
_WS_BINARY, _WS_TEXT = WSMsgType.BINARY, WSMsgType.TEXT


class AiohttpPort:
    """A client on an aiohttp `WebSocketResponse` (already prepared); `inbox`: its frames can be handled
    where they are parsed (`gateway/wsinbox.py`)."""

    __slots__ = ("_frames", "inbox", "ws")

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.inbox: Inbox | None = getattr(ws, "inbox", None)
        self._frames = FrameWriter(ws)

    def write(self, data: bytes, binary: bool) -> Awaitable[None] | None:
        """A frame written now, with no coroutine (None), else what to await: aiohttp's send (a socket
        closing, compressed...) or the transport's drain."""
        sent = self._frames.send(data, BINARY_OPCODE if binary else TEXT_OPCODE)
        if sent is True:
            return None
        if sent is False:
            return self.ws.send_bytes(data) if binary else self.ws.send_frame(data, _WS_TEXT)
        return sent

    @property
    def closed(self) -> bool:
        return self.ws.closed

    async def receive(self, timeout: float | None = None) -> Inbound:
        msg = await self.ws.receive(timeout=timeout)
        kind = frame_kind(self.ws, msg)
        return Inbound(kind, msg.data) if kind is TEXT or kind is BINARY else Inbound(kind)

    # aiohttp's own coroutines, returned rather than awaited in one of ours: one frame fewer per message
    def send_text(self, data: bytes) -> Awaitable[None]:
        return self.ws.send_frame(data, _WS_TEXT)

    def send_bytes(self, data: bytes) -> Awaitable[None]:
        return self.ws.send_bytes(data)

    async def close(self, code: int, message: bytes = b"") -> None:
        await self.ws.close(code=code, message=message)


def frame_kind(ws: web.WebSocketResponse, msg: WSMessage) -> str:
    """What an aiohttp message read from the client is: TEXT, BINARY, TOO_BIG or CLOSED."""
    t = msg.type
    if t is _WS_BINARY:
        return BINARY
    if t is _WS_TEXT:
        return TEXT
    if t is WSMsgType.ERROR:
        err = ws.exception()
        if err is not None and "size" in str(err).lower():
            return TOO_BIG
    return CLOSED


@dataclass(slots=True, frozen=True)
class Frame:
    """A frame the session sent: text (`str`) or binary (`bytes`)."""

    data: str | bytes

    @property
    def is_text(self) -> bool:
        return isinstance(self.data, str)


class CapturePort:
    """A client with no socket: fed by code, its output captured.

    `keep=False` keeps no frames (a long shadow session): use `on_frame` or an addon to see them."""

    def __init__(self, *, max_inbound: int = 256, keep: bool = True,
                 on_frame: Callable[[Frame], Any] | None = None) -> None:
        self.inbox: asyncio.Queue[Inbound] = asyncio.Queue(max_inbound)
        self.frames: list[Frame] = []
        self.keep = keep
        self.on_frame = on_frame
        self.closed = False
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.refusal: Refusal | None = None
        self.closed_event = asyncio.Event()

    # -- the client's side ----------------------------------------------------------------------
    async def feed_text(self, data: str | bytes) -> None:
        await self.inbox.put(Inbound(TEXT, data.decode() if isinstance(data, bytes) else data))

    async def feed_json(self, obj: Any) -> None:
        import orjson

        await self.feed_text(orjson.dumps(obj).decode())

    async def feed_bytes(self, data: bytes) -> None:
        await self.inbox.put(Inbound(BINARY, bytes(data)))

    async def feed_close(self) -> None:
        """The client closes its side (as a client's close frame would)."""
        await self.inbox.put(Inbound(CLOSED))

    def texts(self) -> list[str]:
        return [f.data for f in self.frames if isinstance(f.data, str)]

    def json(self) -> list[Any]:
        import orjson

        return [orjson.loads(t) for t in self.texts()]

    def audio(self) -> bytes:
        return b"".join(f.data for f in self.frames if isinstance(f.data, bytes))

    # -- the session's side ---------------------------------------------------------------------
    async def receive(self, timeout: float | None = None) -> Inbound:
        if self.closed:
            return Inbound(CLOSED)
        if timeout is None:
            return await self.inbox.get()
        return await asyncio.wait_for(self.inbox.get(), timeout)

    def _out(self, data: str | bytes) -> None:
        if self.closed:
            raise ConnectionResetError("the capture port is closed")
        frame = Frame(data)
        if self.keep:
            self.frames.append(frame)
        if self.on_frame is not None:
            self.on_frame(frame)

    async def send_text(self, data: bytes) -> None:
        self._out(data.decode())

    async def send_bytes(self, data: bytes) -> None:
        self._out(bytes(data))

    async def close(self, code: int, message: bytes = b"") -> None:
        if not self.closed:
            self.closed = True
            self.close_code = code
            self.close_reason = message.decode(errors="replace")
            self.closed_event.set()

    def refuse(self, refusal: Refusal) -> None:
        self.refusal = refusal
        self.closed = True
        self.closed_event.set()
