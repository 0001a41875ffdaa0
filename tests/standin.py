"""The stand-in legacy vendor: a second gateway instance on loopback (its own emulator, TLS from the test CA)
plus a request recorder (specs/traffic.md §10).

It speaks the three dialects well enough for the official SDKs (the contract suite proves it), so the
gateway's passthrough can be tested offline against something that answers like the vendors. The recorder
keeps what reached the "vendor": method, raw path and query, headers, a body hash, WebSocket frames both
ways and close codes, so tests can prove credentials were swapped and everything else arrived as sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from aiohttp.streams import StreamReader

from gateway.app import create_app
from gateway.config import Settings
from gateway.dialects.common import AUTH
from gateway.emulator.app import create_emulator_app
from gateway.session.port import AiohttpPort
from gateway.wsinbox import InboxResponse
from tests.conftest import Emulator, Gateway, run_app

PROVIDERS = ("elevenlabs", "cartesia", "deepgram")


@dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body_sha256: str | None = None
    body_len: int = 0
    frames_in: list[tuple[str, bytes]] = field(default_factory=list)  # client -> vendor
    frames_out: list[tuple[str, bytes]] = field(default_factory=list)  # vendor -> client
    close_code: int | None = None

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


@dataclass
class StandIn:
    app: web.Application
    http: str
    https: str
    emulator: Emulator
    seen: list[Seen] = field(default_factory=list)

    def last(self, path_part: str = "") -> Seen:
        return next(s for s in reversed(self.seen) if path_part in s.path)


def _recorder(standin: StandIn) -> Any:
    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        seen = Seen(request.method, request.rel_url.raw_path, request.rel_url.raw_query_string,
                    list(request.headers.items()))
        standin.seen.append(seen)
        if request.body_exists and request.headers.get("Upgrade", "").lower() != "websocket":
            body = await request.read()
            seen.body_sha256, seen.body_len = hashlib.sha256(body).hexdigest(), len(body)
            # the handler may stream the body: give it a fresh reader holding the same bytes
            reader = StreamReader(request.protocol, max(2**16, 2 * len(body)), loop=asyncio.get_running_loop())
            reader.feed_data(body)
            reader.feed_eof()
            request._payload = reader  # type: ignore[attr-defined]
        request["standin.seen"] = seen
        return await handler(request)

    return record


def _patch_ws_recording(monkeypatch: pytest.MonkeyPatch, app: web.Application) -> None:
    """Frames of the stand-in's sockets (only its own: the gateway under test runs in the same process)."""
    receive, send_frame, close = web.WebSocketResponse.receive, web.WebSocketResponse.send_frame, \
        web.WebSocketResponse.close

    def seen_of(ws: web.WebSocketResponse) -> Seen | None:
        req = getattr(ws, "_req", None)
        return req.get("standin.seen") if req is not None and req.app is app else None

    async def rec_receive(self: web.WebSocketResponse, timeout: float | None = None) -> Any:
        msg = await receive(self, timeout)
        s = seen_of(self)
        if s is not None and msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
            data = msg.data.encode() if isinstance(msg.data, str) else msg.data
            s.frames_in.append((msg.type.name, data))
        return msg

    async def rec_send(self: web.WebSocketResponse, message: bytes, opcode: WSMsgType, compress: int | None = None
                       ) -> None:
        s = seen_of(self)
        if s is not None:
            s.frames_out.append((opcode.name, bytes(message)))
        await send_frame(self, message, opcode, compress)

    async def rec_close(self: web.WebSocketResponse, *, code: int = 1000, message: bytes = b"",
                        drain: bool = True) -> bool:
        s = seen_of(self)
        if s is not None and s.close_code is None:
            s.close_code = code
        return await close(self, code=code, message=message, drain=drain)

    monkeypatch.setattr(web.WebSocketResponse, "receive", rec_receive)
    monkeypatch.setattr(web.WebSocketResponse, "send_frame", rec_send)
    monkeypatch.setattr(web.WebSocketResponse, "close", rec_close)
    # a gateway's sessions take client frames where aiohttp parses them and write frames to the transport
    # (`gateway/wsinbox.py`, `gateway/wsframe.py`), past `receive` and `send_frame`: in this process they go
    # through aiohttp's, so the stand-in's frames are recorded
    monkeypatch.setattr(InboxResponse, "_post_start", web.WebSocketResponse._post_start)
    monkeypatch.setattr(AiohttpPort, "write", lambda self, data, binary: self.ws.send_bytes(data) if binary
                        else self.ws.send_frame(data, WSMsgType.TEXT))


async def _vendor_only_http(request: web.Request) -> web.Response:
    """A route the real vendor has and the gateway does not (dubbing, cloning ...): echoes what it got."""
    auth = request.app[AUTH].settings
    key = request.headers.get("xi-api-key") or request.headers.get("Authorization", "").partition(" ")[2]
    if auth.mode == "managed" and auth.tenant_for(key) is None:
        return web.json_response({"detail": {"status": "invalid_api_key"}}, status=401)
    body = await request.read()
    return web.json_response({"path": request.rel_url.raw_path, "query": request.rel_url.raw_query_string,
                              "bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()},
                             headers={"request-id": "vendor-only-1"})


async def _vendor_only_ws(request: web.Request) -> web.WebSocketResponse:
    """A socket only the vendor serves (agents): echoes each frame with its type."""
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            await ws.send_str("echo:" + msg.data)
        elif msg.type == WSMsgType.BINARY:
            await ws.send_bytes(msg.data[::-1])
    return ws


@contextlib.asynccontextmanager
async def start_standin(tls_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                        auth: dict[str, Any] | None = None) -> AsyncIterator[StandIn]:
    """`auth`: the stand-in's own auth section (managed with the vendor key only, or forward)."""
    emu_app = create_emulator_app()
    async with run_app(emu_app) as (emu_port, _):
        emulator = Emulator(emu_app, f"http://127.0.0.1:{emu_port}/api")
        settings = Settings.model_validate({
            "tls_cert": tls_files["cert"], "tls_key": tls_files["key"], "gradium": {"base_url": emulator.url},
            **({"auth": auth} if auth else {}),
        })
        app = create_app(settings)
        app.router.add_post("/v1/dubbing", _vendor_only_http)
        app.router.add_get("/v1/convai/conversation", _vendor_only_ws)
        app.router.add_get("/v1/projects/{project_id}/usage", _vendor_only_http)
        standin = StandIn(app, "", "", emulator)
        app.middlewares.append(_recorder(standin))
        _patch_ws_recording(monkeypatch, app)
        server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ssl.load_cert_chain(str(tls_files["cert"]), str(tls_files["key"]))
        async with run_app(app, server_ssl) as (port, tls_port):
            standin.http, standin.https = f"http://127.0.0.1:{port}", f"https://127.0.0.1:{tls_port}"
            yield standin


def legacy_section(standin: StandIn, tls_files: dict[str, Path], **extra: Any) -> dict[str, Any]:
    """Every vendor of the gateway under test pointed at the stand-in (over TLS, trusting the test CA)."""
    return {p: {"base_url": standin.https, "ca_file": str(tls_files["ca"]), **extra} for p in PROVIDERS}


def front_settings(standin: StandIn, tls_files: dict[str, Path], **extra: Any) -> Settings:
    data: dict[str, Any] = {"tls_cert": tls_files["cert"], "tls_key": tls_files["key"],
                            "legacy": legacy_section(standin, tls_files), **extra}
    return Settings.model_validate(data)


@contextlib.asynccontextmanager
async def start_front(settings: Settings, standin: StandIn) -> AsyncIterator[Gateway]:
    """The gateway under test (its Gradium side is its built-in emulator). The returned `Gateway` shows the
    stand-in's app and emulator, so contract tests' emulator assertions read the side that served."""
    app = create_app(settings)
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ssl.load_cert_chain(str(settings.tls_cert), str(settings.tls_key))
    async with run_app(app, server_ssl) as (port, tls_port):
        gw = Gateway(standin.app, f"http://127.0.0.1:{port}", f"https://127.0.0.1:{tls_port}", standin.emulator)
        gw.front = app  # type: ignore[attr-defined]
        yield gw
