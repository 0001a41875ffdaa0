"""Text frames written straight to an aiohttp WebSocket's transport: the per-frame path to Gradium.

aiohttp's `send_frame` is three coroutines deep (the response's, the writer's, its frame writer) and, as a
client, copies the payload into a bytearray to mask it and then again into header + mask + payload. A
client audio chunk (every 80 ms per stream, for minutes) is sent here instead with no coroutine: the
payload is built once in a bytearray, masked in place with aiohttp's own (Cython) mask function and a
fresh random key per frame (RFC 6455 5.3), and written with the header in one `transport.write`.

Only the plain case is taken (no compression, an open transport, a writer not closing): anything else
says so (`write` returns False) and the caller sends through aiohttp as before, so its errors and its
close handling stay aiohttp's. Flow control as aiohttp's: once the transport has paused its protocol
(the peer reads slower than we write), the caller awaits the protocol's drain.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Awaitable
from typing import Any

from aiohttp import ClientWebSocketResponse

try:
    from aiohttp._websocket.helpers import websocket_mask
except ImportError:  # pragma: no cover - older aiohttp: the same function, before the module split
    from aiohttp.http_websocket import _websocket_mask as websocket_mask  # type: ignore[attr-defined,no-redef]

_TEXT_FIN = 0x81  # FIN + opcode 1 (text)
_MASKED = 0x80
_HEAD_SHORT = struct.Struct("!BB").pack  # payload < 126 bytes
_HEAD_MEDIUM = struct.Struct("!BBH").pack  # < 64 KiB: every audio chunk
_HEAD_LONG = struct.Struct("!BBQ").pack
_MASK_KEY = struct.Struct("!L").pack
_random_bits = random.Random().getrandbits  # aiohttp's writer draws its mask keys the same way


class MaskedTextWriter:
    """Writes masked text frames on one client socket (`ws`), or says it cannot (then use aiohttp)."""

    __slots__ = ("_protocol", "_transport", "_writer")

    def __init__(self, ws: ClientWebSocketResponse) -> None:
        writer: Any = getattr(ws, "_writer", None)
        ok = (writer is not None and getattr(writer, "use_mask", False) and not getattr(writer, "compress", 1)
              and getattr(writer, "transport", None) is not None and hasattr(writer, "_closing")
              and hasattr(getattr(writer, "protocol", None), "_paused"))
        self._writer = writer if ok else None  # an aiohttp whose writer looks different: always aiohttp's path
        self._transport = writer.transport if ok else None
        self._protocol = writer.protocol if ok else None

    def write(self, head: bytes, body: bytes, tail: bytes) -> Awaitable[None] | bool:
        """One text frame whose payload is `head + body + tail`: True when written (nothing to wait for),
        the protocol's drain when written but the transport asks us to wait, False when not written."""
        writer = self._writer
        transport = self._transport
        if writer is None or writer._closing or transport.is_closing():  # type: ignore[union-attr]
            return False
        payload = bytearray(head)
        payload += body
        payload += tail
        n = len(payload)
        if n < 126:
            header = _HEAD_SHORT(_TEXT_FIN, _MASKED | n)
        elif n < 65536:
            header = _HEAD_MEDIUM(_TEXT_FIN, _MASKED | 126, n)
        else:
            header = _HEAD_LONG(_TEXT_FIN, _MASKED | 127, n)
        mask = _MASK_KEY(_random_bits(32))
        websocket_mask(mask, payload)
        transport.write(header + mask + payload)  # type: ignore[union-attr]
        protocol = self._protocol
        if protocol._paused:  # type: ignore[union-attr]
            return protocol._drain_helper()  # type: ignore[union-attr,no-any-return]
        return True
