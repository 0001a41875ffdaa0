"""A copy of a REST request body for its shadow leg, taken while the primary reads it (specs/traffic.md §4.2).

The primary keeps streaming: the request's payload is replaced by a reader fed from the original one
chunk by chunk, and each chunk is also kept for the shadow, up to `limit` bytes (beyond: the copy is
abandoned, the shadow leg becomes `dropped_overflow`, the primary goes on). The pump feeds no faster than
the primary reads (the copy's reader pauses it), so a slow primary still backpressures the client.

aiohttp internals: the request's `_payload` (its body reader, swapped for the copy) and `StreamReader`'s
constructor `(protocol, limit, loop=)`, whose protocol only needs `pause_reading`, `resume_reading` and
`connected` (`tests/traffic/test_shadow_rest.py` covers both).
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web
from aiohttp.streams import StreamReader

CHUNK_LIMIT = 2**16


class _Gate:
    """Flow control of the primary's reader: paused while the primary has not read what it was given."""

    connected = True  # read by aiohttp's StreamReader

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.open.set()

    def pause_reading(self) -> None:
        self.open.clear()

    def resume_reading(self, resume_parser: bool = True) -> None:
        self.open.set()


class BodyTee:
    def __init__(self, request: web.Request, limit: int) -> None:
        self.limit = limit
        self.overflow = False
        self.complete = False
        self.done = asyncio.Event()
        self._chunks: list[bytes] = []
        self._size = 0
        self._gate = _Gate()
        source = request._payload  # type: ignore[attr-defined]
        self._copy = StreamReader(self._gate, CHUNK_LIMIT, loop=asyncio.get_running_loop())  # type: ignore[arg-type]
        request._payload = self._copy  # type: ignore[attr-defined]
        self._task = asyncio.create_task(self._pump(source), name="shadow-body-tee")

    async def _pump(self, source: StreamReader) -> None:
        try:
            while chunk := await source.readany():
                self._copy.feed_data(chunk)
                self._keep(chunk)
                await self._gate.open.wait()
            self.complete = True
            self._copy.feed_eof()
        except asyncio.CancelledError:
            self._copy.feed_eof()
            raise
        except Exception as exc:  # the client went away: the primary sees the same error
            self._copy.set_exception(exc)
        finally:
            self.done.set()

    def _keep(self, chunk: bytes) -> None:
        if self.overflow:
            return
        if self._size + len(chunk) > self.limit:
            self.overflow = True
            self._chunks.clear()
            return
        self._chunks.append(chunk)
        self._size += len(chunk)

    def body(self) -> bytes | None:
        """The whole body once the primary read it; None when it was larger than `limit` or never finished."""
        return b"".join(self._chunks) if self.complete and not self.overflow else None

    async def close(self) -> None:
        """The primary is done: a body it did not read to the end is not waited for."""
        if not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # a task cancelled before its first step never runs its `finally`: the leg waiting on `done` must
        # still learn that no body is coming
        self.done.set()
