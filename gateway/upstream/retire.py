"""Pooling a live STT socket whose client left mid-request, instead of closing it (`GradiumClient`'s part)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import aiohttp
import orjson

from gateway.upstream import protocol

RETIRE_S = 2.0  # a retired socket's request must end within this, or the socket is closed
RETIRE_MAX = 1024  # retirements under way at once; past it a socket is closed outright
_END_OF_STREAM = protocol.dumps(protocol.end_of_stream())
PoolKey = tuple[str, str]  # (kind, API key)


class Retirements:
    """The retirements of one `GradiumClient`, which pools what they keep through `give_back`."""

    def __init__(self, give_back: Callable[[PoolKey, aiohttp.ClientWebSocketResponse], None],
                 has_room: Callable[[PoolKey], bool]) -> None:
        self._give_back = give_back
        self._has_room = has_room
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    def retire(self, key: PoolKey, ws: aiohttp.ClientWebSocketResponse) -> bool:
        """A speech-to-text socket whose request did not end (the client left mid-stream, e.g. after an
        ElevenLabs commit): end the request on Gradium's side (`end_of_stream`, then read to Gradium's) in
        a task and pool the socket, rather than close it and pay a new connection (TCP, TLS, WebSocket
        handshakes) for the next request. Within RETIRE_S, or the socket is closed. False: close it now
        (text-to-speech, whose end would be more audio to synthesize for nobody; a full pool; shutdown)."""
        if (key[0] != "asr" or ws.closed or self._stopping or len(self._tasks) >= RETIRE_MAX
                or not self._has_room(key)):
            return False
        task = asyncio.get_running_loop().create_task(self._retire(key, ws), name="gradium-retire")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def stop(self) -> None:
        """Shutdown: retirements under way close their sockets instead of pooling them."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _retire(self, key: PoolKey, ws: aiohttp.ClientWebSocketResponse) -> None:
        kept = False
        try:
            async with asyncio.timeout(RETIRE_S):
                await ws.send_frame(_END_OF_STREAM, aiohttp.WSMsgType.TEXT)
                while not kept:
                    msg = await ws.receive()
                    if msg.type is not aiohttp.WSMsgType.TEXT:
                        break  # closed or failed: nothing to keep
                    raw = msg.data if isinstance(msg.data, bytes) else msg.data.encode()
                    if b'"end_of_stream"' in raw or b'"error"' in raw:  # else a text or step: skipped
                        kind = orjson.loads(raw).get("type")
                        if kind == protocol.ERROR:
                            break
                        if kind == protocol.END_OF_STREAM and not ws.closed and not self._stopping:
                            self._give_back(key, ws)
                            kept = True
        except Exception:  # whatever went wrong, the socket is closed below, not pooled
            pass
        finally:
            if not kept:
                with contextlib.suppress(Exception):
                    await ws.close()
