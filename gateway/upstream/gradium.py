"""Gradium client: WebSocket and REST speech sessions on one shared aiohttp session.

Both transports are exposed as the same `GradiumStream` (send Gradium messages, receive parsed
Gradium messages), because REST NDJSON carries the same message types as the WebSocket. Errors,
whatever their shape (WS error frame, HTTP 500 `error from server <code>: ...`, JSON `{"error",
"code"}` or `{"detail"}`), become a `GatewayError` with a kind the dialect can render.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import aiohttp
import orjson

from gateway.errors import GatewayError
from gateway.upstream import protocol
from gateway.upstream.errors import parse_rest_error
from gateway.upstream.protocol import Message
from gateway.upstream.retire import Retirements
from gateway.upstream.stream import GradiumRestStream, GradiumStream, Kind
from gateway.upstream.wsstream import MAX_MSG_SIZE, GradiumWsStream
from gateway.wsinbox import attach_client

__all__ = ["API_SOURCE", "GradiumClient", "GradiumRestStream", "GradiumStream", "GradiumWsStream", "Kind"]

_WS_ROUTES = {"tts": "speech/tts", "asr": "speech/asr"}
_REST_ROUTES = {"tts": "post/speech/tts", "asr": "post/speech/asr"}
API_SOURCE = "gradium-gateway"


class GradiumClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        connect_timeout_s: float = 10.0,
        pool_idle_s: float = 15.0,
        pool_max_idle: int = 16,
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/") + "/"
        self.ws_base = "ws" + self.base_url[4:] if self.base_url.startswith("http") else self.base_url
        self.connect_timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout_s,
                                                     sock_connect=connect_timeout_s)
        self.pool_idle_s = pool_idle_s
        self.pool_max_idle = pool_max_idle
        self._idle: dict[tuple[str, str], list[tuple[float, aiohttp.ClientWebSocketResponse]]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._reachable: tuple[float, bool] | None = None
        self._closing: set[asyncio.Task[Any]] = set()
        self.retirements = Retirements(self.give_back, self._has_room)
        self.reused = 0  # sockets taken from the pool (for metrics and tests)
        # Streams open now, and the most open at once since the last sweep: the pool keeps up to that
        # many idle sockets (at least `pool_max_idle`). Sessions run back to back hand their socket to the
        # next one; under a fixed cap of 16, 200 of them closed about every other socket and the next
        # session paid a new handshake (on both sides) in its time to first audio.
        self.in_use = 0
        self._peak_in_use = 0

    def _headers(self, api_key: str) -> dict[str, str]:
        return {"x-api-key": api_key, "x-api-source": API_SOURCE}

    async def open_ws(self, kind: Kind, setup: Message, api_key: str) -> GradiumWsStream:
        """Send `setup` on a pooled or new socket; input may follow at once (Gradium buffers it until ready)."""
        key = (kind, api_key)
        ws = self._take(key)
        stream = GradiumWsStream(ws or await self.connect(kind, api_key), self, key, reused=ws is not None)
        self.in_use += 1
        if self.in_use > self._peak_in_use:
            self._peak_in_use = self.in_use
        await stream.send(protocol.setup(setup, close_ws_on_eos=False))  # the socket goes back to the pool
        return stream

    def _take(self, key: tuple[str, str]) -> aiohttp.ClientWebSocketResponse | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            since, ws = idle.pop()
            if not ws.closed and now - since < self.pool_idle_s:
                self.reused += 1
                return ws
            self._close_later(ws)
        if idle is not None and not idle:
            del self._idle[key]
        return None

    def _close_later(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        task = asyncio.get_running_loop().create_task(ws.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def sweep(self) -> int:
        """Close every pooled socket idle for `pool_idle_s` or more, whatever its key; how many were closed."""
        now = time.monotonic()
        closed = 0
        self._peak_in_use = self.in_use  # the idle cap follows the load of the last sweep period
        for key in list(self._idle):
            keep = []
            for since, ws in self._idle[key]:
                if ws.closed or now - since >= self.pool_idle_s:
                    self._close_later(ws)
                    closed += 1
                else:
                    keep.append((since, ws))
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        return closed

    async def _sweep_forever(self) -> None:
        while self._idle:
            await asyncio.sleep(self.pool_idle_s / 2)
            self.sweep()
        self._sweeper = None

    def give_back(self, key: tuple[str, str], ws: aiohttp.ClientWebSocketResponse) -> None:
        idle = self._idle.setdefault(key, [])
        now = time.monotonic()
        stale = []
        while idle and now - idle[0][0] >= self.pool_idle_s:  # oldest first: sockets are appended as they come back
            stale.append(idle.pop(0)[1])
        if not self._has_room(key):
            stale.append(ws)
        else:
            idle.append((now, ws))
        for w in stale:
            self._close_later(w)
        if self._sweeper is None:  # idle sockets are closed on a timer, not only when their key comes back
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    def _has_room(self, key: tuple[str, str]) -> bool:
        return len(self._idle.get(key, ())) < max(self.pool_max_idle, self._peak_in_use)

    async def reachable(self, timeout_s: float = 2.0, cache_s: float = 2.0) -> bool:
        """Does Gradium answer HTTP at all (any status)? Cached briefly: readiness probes come often."""
        now = time.monotonic()
        if self._reachable is not None and now - self._reachable[0] < cache_s:
            return self._reachable[1]
        try:
            async with self.session.get(self.base_url, timeout=aiohttp.ClientTimeout(total=timeout_s)):
                ok = True
        except (TimeoutError, aiohttp.ClientError, OSError):
            ok = False
        self._reachable = (time.monotonic(), ok)
        return ok

    def idle_count(self) -> int:
        """Sockets waiting in the pool for their next request (open on purpose, not leaked)."""
        return sum(1 for idle in self._idle.values() for _, ws in idle if not ws.closed)

    async def close_idle(self) -> None:
        await self.retirements.stop()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(BaseException):
                await self._sweeper
            self._sweeper = None
        for idle in self._idle.values():
            for _, ws in idle:
                with contextlib.suppress(Exception):
                    await ws.close()
        self._idle.clear()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def connect(self, kind: Kind, api_key: str) -> aiohttp.ClientWebSocketResponse:
        try:
            ws = await self.session.ws_connect(
                self.ws_base + _WS_ROUTES[kind],
                headers=self._headers(api_key),
                timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
                max_msg_size=MAX_MSG_SIZE,
                autoping=True,
                compress=0,
                # text frames stay bytes: orjson parses (and checks the UTF-8 of) bytes as they are, so a
                # `str` made of every Gradium message (audio is most of its 5 KB) would be a copy for nothing
                decode_text=False,
            )
            # its messages can be handled where they are parsed (`GradiumWsStream.listen`); Gradium has sent
            # nothing yet (it answers a setup), so aiohttp's queue can be replaced now
            attach_client(ws, MAX_MSG_SIZE, decode_text=False)
        except aiohttp.WSServerHandshakeError as exc:
            status = exc.status
            kind_ = "unauthorized" if status in (401, 403) else "upstream_unavailable"
            raise GatewayError(kind_, f"Gradium refused the connection (HTTP {status})") from None
        except (TimeoutError, aiohttp.ClientError, OSError):
            raise GatewayError("upstream_unavailable", "cannot reach Gradium") from None
        return ws

    async def post(
        self,
        kind: Kind,
        api_key: str,
        *,
        json: dict[str, Any] | None = None,
        data: Any = None,
        params: dict[str, str] | None = None,
        content_type: str | None = None,
    ) -> GradiumRestStream:
        headers = self._headers(api_key)
        if json is not None:
            content_type = "application/json"
        if content_type:
            headers["Content-Type"] = content_type
        try:
            resp = await self.session.post(
                self.base_url + _REST_ROUTES[kind],
                headers=headers,
                data=orjson.dumps(json) if json is not None else data,
                params=params,
                timeout=self.connect_timeout,
            )
        except (TimeoutError, aiohttp.ClientError, OSError):
            raise GatewayError("upstream_unavailable", "cannot reach Gradium") from None
        if resp.status >= 300:
            body = await resp.read()
            resp.release()
            raise parse_rest_error(resp.status, body)
        return GradiumRestStream(resp)

    async def get_json(self, path: str, api_key: str, params: dict[str, str] | None = None) -> Any:
        try:
            async with self.session.get(
                self.base_url + path, headers=self._headers(api_key), params=params, timeout=self.connect_timeout
            ) as resp:
                body = await resp.read()
                if resp.status >= 300:
                    raise parse_rest_error(resp.status, body)
                return orjson.loads(body)
        except (TimeoutError, aiohttp.ClientError, OSError, orjson.JSONDecodeError):
            raise GatewayError("upstream_unavailable", "cannot reach Gradium") from None
