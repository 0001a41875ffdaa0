"""WebSocket frames written straight to an aiohttp socket's transport: the per-frame path, both ways.

aiohttp's `send_frame` is three coroutines deep (the socket's, the writer's, its frame writer) and, as a
client, copies the payload into a bytearray to mask it and then again into header + mask + payload. A
client audio chunk to Gradium (every 80 ms per stream, for minutes), and what the client is sent back, go
out here instead with no coroutine: as a client (Gradium), the payload is built once in a bytearray, masked
in place with aiohttp's own (Cython) mask function and a fresh random key per frame (RFC 6455 5.3); as a
server (the client's socket), header and payload go out as aiohttp writes them; one `transport.write` each.

Only the plain case is taken (no compression, an open transport, a writer not closing): anything else
says so (the write returns False) and the caller sends through aiohttp as before, so its errors and its
close handling stay aiohttp's. Flow control as aiohttp's: once the transport has paused its protocol (the
peer reads slower than we write), the caller awaits the protocol's drain.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Awaitable
from typing import Any

# aiohttp internals used here (none is public API; pyproject's aiohttp range is where they were checked, and
# tests/session/test_fast_paths.py fails on an aiohttp where direct writes stop engaging):
# - `aiohttp._websocket.helpers.websocket_mask(mask, bytearray)`: aiohttp's Cython masking, in place;
# - a socket's `_writer` (WebSocketWriter): `transport`, `protocol`, `use_mask`, `compress`, `_closing`;
# - its protocol (aiohttp's BaseProtocol): `_paused` and `_drain_helper()`, its flow control.
# Where one is missing, `FrameWriter` writes nothing (False) and the caller sends through aiohttp.
try:
    from aiohttp._websocket.helpers import websocket_mask
except ImportError:  # pragma: no cover - an aiohttp without it: client frames go through aiohttp's send
    websocket_mask = None  # type: ignore[assignment]

TEXT = 0x1
BINARY = 0x2
_FIN = 0x80
_MASKED = 0x80
_HEAD_SHORT = struct.Struct("!BB").pack  # payload < 126 bytes
_HEAD_MEDIUM = struct.Struct("!BBH").pack  # < 64 KiB: every audio chunk
_HEAD_LONG = struct.Struct("!BBQ").pack
_MASK_KEY = struct.Struct("!L").pack
_random_bits = random.Random().getrandbits  # aiohttp's writer draws its mask keys the same way
_join = bytearray().join  # one bytearray of the exact size (`+=` twice reallocates it twice)


def _header(opcode: int, mask_bit: int, n: int) -> bytes:
    if n < 126:
        return _HEAD_SHORT(_FIN | opcode, mask_bit | n)
    if n < 65536:
        return _HEAD_MEDIUM(_FIN | opcode, mask_bit | 126, n)
    return _HEAD_LONG(_FIN | opcode, mask_bit | 127, n)


class FrameWriter:
    """Writes whole frames on one aiohttp socket (client: masked; server: not), or says it cannot."""

    __slots__ = ("_header", "_length", "_masked", "_protocol", "_transport", "_writer")

    def __init__(self, ws: Any) -> None:
        writer: Any = getattr(ws, "_writer", None)  # a server socket has one once prepared
        try:
            ok = writer is not None and not writer.compress and writer.transport is not None
            masked = bool(writer.use_mask) if ok else False
            if ok:
                writer._closing, writer.protocol._paused, writer.protocol._drain_helper  # noqa: B018 - what `write` reads
                ok = not masked or websocket_mask is not None
        except AttributeError:  # an aiohttp whose writer looks different: always aiohttp's path
            ok = masked = False
        self._writer = writer if ok else None
        self._transport = writer.transport if ok else None
        self._protocol = writer.protocol if ok else None
        self._masked = masked
        self._length = -1  # the last masked text frame's payload length, and its header
        self._header = b""

    def write(self, head: bytes, body: bytes, tail: bytes, opcode: int = TEXT) -> Awaitable[None] | bool:
        """One frame whose payload is `head + body + tail`: True when written (nothing to wait for), the
        protocol's drain when written but the transport asks us to wait, False when not written."""
        writer = self._writer
        transport = self._transport
        if writer is None or writer._closing or transport.is_closing():  # type: ignore[union-attr]
            return False
        payload = _join((head, body, tail))
        if self._masked:
            mask = _MASK_KEY(_random_bits(32))
            websocket_mask(mask, payload)
            transport.write(_header(opcode, _MASKED, len(payload)) + mask + payload)  # type: ignore[union-attr]
        else:
            transport.write(_header(opcode, 0, len(payload)) + payload)  # type: ignore[union-attr]
        return self._drained()

    def write_masked_text(self, head: bytes, body: bytes, tail: bytes) -> Awaitable[None] | bool:
        """`write` of a text frame on a client socket (the caller knows it is one): Gradium's audio, once per
        client chunk, whose chunks have the same length most of the time (the header is kept)."""
        writer = self._writer
        transport = self._transport
        if writer is None or writer._closing or transport.is_closing():  # type: ignore[union-attr]
            return False
        payload = _join((head, body, tail))
        n = len(payload)
        if n != self._length:
            self._length, self._header = n, _header(TEXT, _MASKED, n)
        mask = _MASK_KEY(_random_bits(32))
        websocket_mask(mask, payload)
        transport.write(self._header + mask + payload)  # type: ignore[union-attr]
        if self._protocol._paused:  # type: ignore[union-attr]
            return self._protocol._drain_helper()  # type: ignore[union-attr,no-any-return]
        return True

    def send(self, payload: bytes, opcode: int = TEXT) -> Awaitable[None] | bool:
        """One frame of `payload` (as `write`)."""
        if self._masked:
            return self.write(b"", payload, b"", opcode)
        writer = self._writer
        transport = self._transport
        if writer is None or writer._closing or transport.is_closing():  # type: ignore[union-attr]
            return False
        transport.write(_header(opcode, 0, len(payload)) + payload)  # type: ignore[union-attr]
        return self._drained()

    def _drained(self) -> Awaitable[None] | bool:
        protocol = self._protocol
        if protocol._paused:  # type: ignore[union-attr]
            return protocol._drain_helper()  # type: ignore[union-attr,no-any-return]
        return True
