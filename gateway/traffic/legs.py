"""Shadow legs: the other side of a sampled unit, fed the client's frames, observed, never answering it.

A leg is the same engine as a primary of its side, with a headless client (specs/traffic.md §4.2): a
Gradium leg is a translation session on a `CapturePort` (`gateway.session.headless`), a legacy leg is
the passthrough's vendor socket. Frames wait in a bounded queue that the primary only ever `offer`s to
(never awaits); when the queue is over its frame or byte bound the whole leg is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp import WSMsgType, web

from gateway.mapping.compiler import CompiledMapping
from gateway.session.port import CapturePort, Frame
from gateway.traffic.settings import ShadowQueue

END = object()  # the primary's input ended


@dataclass(slots=True)
class LegStats:
    """What a leg produced, in the client's dialect (bounded): enough for outcome rows and a comparator."""

    side: str
    started: float = field(default_factory=time.monotonic)
    sent_first: float | None = None
    first_output: float | None = None
    frames_in: int = 0
    frames_out: int = 0
    bytes_out: int = 0
    audio_bytes: int = 0
    texts: list[str] = field(default_factory=list)
    close_code: int | None = None
    upstream_request_id: str | None = None
    max_texts: int = 512
    max_text_frame: int = 4096  # larger text frames carry audio (base64): counted, not kept in `texts`
    # for the comparator: frames sent (text as is, binary as its size) and received, with their times
    ins: list[tuple[float, str | int]] = field(default_factory=list)
    outs: list[tuple[float, str | bytes]] = field(default_factory=list)
    kept_bytes: int = 0
    max_frames: int = 8192
    max_kept_bytes: int = 16 * 1024 * 1024

    def record_in(self, t: float, data: str | bytes) -> None:
        if len(self.ins) < self.max_frames:
            self.ins.append((t, len(data) if isinstance(data, bytes) else data))

    def sent(self, data: str | bytes | None = None) -> None:
        if data is not None:
            self.record_in(time.monotonic(), data)
        self.frames_in += 1
        if self.sent_first is None:
            self.sent_first = time.monotonic()

    def out(self, data: str | bytes, t: float | None = None) -> None:
        now = time.monotonic() if t is None else t
        if self.first_output is None:
            self.first_output = now
        n = len(data)  # once: this runs for every output of both legs
        if len(self.outs) < self.max_frames and self.kept_bytes + n <= self.max_kept_bytes:
            self.outs.append((now, data))
            self.kept_bytes += n
        self.frames_out += 1
        self.bytes_out += n
        if isinstance(data, bytes):
            self.audio_bytes += n
        elif n <= self.max_text_frame and len(self.texts) < self.max_texts:
            self.texts.append(data)

    def counted(self, size: int) -> None:
        """An output only counted (an audio-carrying text frame)."""
        if self.first_output is None:
            self.first_output = time.monotonic()
        self.frames_out += 1
        self.bytes_out += size

    def first_output_ms(self) -> float | None:
        """From the leg's own first send: queue lag and connect time cancel out."""
        if self.first_output is None:
            return None
        return round((self.first_output - (self.sent_first or self.started)) * 1000, 2)


class FrameQueue:
    """Bounded by frames and bytes; `offer` never blocks and says False when the leg must be dropped."""

    def __init__(self, bounds: ShadowQueue) -> None:
        self.bounds = bounds
        self._items: deque[tuple[float, Any]] = deque()
        self._bytes = 0
        self._ready = asyncio.Event()

    def offer(self, item: Any, size: int, t: float | None = None) -> bool:
        """`t`: when the primary received the item (the queue lag counts from there)."""
        if len(self._items) >= self.bounds.max_frames or self._bytes + size > self.bounds.max_bytes:
            return False
        self._items.append((time.monotonic() if t is None else t, item))
        self._bytes += size
        if not self._ready.is_set():
            self._ready.set()
        return True

    async def get(self) -> tuple[float, Any]:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        t, item = self._items.popleft()
        self._bytes -= len(item) if isinstance(item, str | bytes) else 0
        return t, item


class LegacySocket:
    """The vendor's socket, as a shadow: frames sent as they came, outputs recorded."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, stats: LegStats) -> None:
        self.ws = ws
        self.stats = stats
        self.reader = asyncio.create_task(self._read(), name="shadow-legacy-read")

    async def _read(self) -> None:
        while True:
            msg = await self.ws.receive()
            if msg.type == WSMsgType.TEXT:
                data = msg.data
                # audio-sized text frames are only counted: decoding them would cost the event loop for nothing
                self.stats.out(data.decode("utf-8", "replace"))
            elif msg.type == WSMsgType.BINARY:
                self.stats.out(msg.data)
            else:
                self.stats.close_code = self.ws.close_code
                return

    async def send(self, data: str | bytes) -> None:
        if isinstance(data, str):
            await self.ws.send_frame(data.encode(), WSMsgType.TEXT)
        else:
            await self.ws.send_frame(data, WSMsgType.BINARY)

    async def finished(self) -> None:
        await asyncio.shield(self.reader)

    async def close(self) -> None:
        self.reader.cancel()
        with contextlib.suppress(BaseException):
            await self.reader
        with contextlib.suppress(Exception):
            await self.ws.close()


class GradiumSession:
    """A headless translation session of the same route, as a shadow."""

    def __init__(self, session: Any, stats: LegStats) -> None:
        self.session = session
        self.stats = stats
        session.start()

    @staticmethod
    def port(stats: LegStats) -> CapturePort:
        return CapturePort(keep=False, on_frame=lambda f: stats.out(_frame_data(f)))

    async def send(self, data: str | bytes) -> None:
        if isinstance(data, str):
            await self.session.send_text(data)
        else:
            await self.session.send_bytes(data)

    async def finished(self) -> None:
        end = await asyncio.shield(self.session.start())
        self.stats.close_code = end.close_code
        self.stats.upstream_request_id = end.upstream_request_id

    async def close(self) -> None:
        with contextlib.suppress(BaseException):
            await self.session.close()
        await self.session.cancel()


def _frame_data(f: Frame) -> str | bytes:
    data = f.data
    return data.decode("utf-8", "replace") if isinstance(data, bytes) and f.is_text else data


def text_chars(item: str | bytes) -> int:
    if not isinstance(item, str):
        return 0
    with contextlib.suppress(Exception):
        msg = orjson.loads(item)
        if isinstance(msg, dict):
            return sum(len(v) for k, v in msg.items() if k in ("text", "transcript") and isinstance(v, str))
    return 0


def parse_query(raw: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(raw, keep_blank_values=True)


def strip_message_credentials(mapping: CompiledMapping, item: str) -> str:
    fields = [s.source.partition(".")[2] for s in mapping.credentials if s.source.startswith("message.")]
    if not fields or not any(f in item for f in fields):
        return item
    with contextlib.suppress(Exception):
        msg = orjson.loads(item)
        if isinstance(msg, dict):
            for f in fields:
                msg.pop(f, None)
            return orjson.dumps(msg).decode()
    return item


class ShadowApp(dict):  # type: ignore[type-arg]
    """The app as a Gradium shadow leg sees it: the same state, but credentials are forwarded as they are
    (the leg presents the tenant's shadow key, never its production key)."""

    def __init__(self, app: web.Application) -> None:
        super().__init__()
        from gateway.auth import Authenticator
        from gateway.config import AuthSettings
        from gateway.dialects.common import AUTH

        real = app[AUTH]
        self._app = app
        self[AUTH] = Authenticator(AuthSettings(mode="forward"), None, real.issuer)

    def __missing__(self, key: Any) -> Any:
        return self._app[key]

    def get(self, key: Any, default: Any = None) -> Any:  # type: ignore[override]
        return self[key] if key in self or key in self._app else default
