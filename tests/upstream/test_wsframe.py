"""Frames written straight to the transport (`FrameWriter`) are what aiohttp's own send gives the other
side: masked client frames and plain server frames of every length class, text or binary, in order with
aiohttp's, and none once closing or compressing."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.upstream import protocol
from gateway.wsframe import BINARY, FrameWriter


async def _echo_server() -> tuple[TestServer, list[tuple[aiohttp.WSMsgType, bytes | str]]]:
    got: list[tuple[aiohttp.WSMsgType, bytes | str]] = []

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        async for msg in ws:
            got.append((msg.type, msg.data))
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    server = TestServer(app)
    await server.start_server()
    return server, got


async def test_frames_of_every_length_arrive_as_sent_and_in_order_with_aiohttps() -> None:
    server, got = await _echo_server()
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(server.make_url("/"), compress=0) as ws:
            frames = FrameWriter(ws)
            bodies = [b"", b"x" * 50, b"y" * 3000, b"z" * 70_000]  # 7-bit, 16-bit and 64-bit lengths
            for body in bodies:
                assert frames.write(b'{"a":"', body, b'"}') is True
            await ws.send_str("after")  # aiohttp's own send, on the same socket
            pcm = bytes(range(256)) * 10
            assert frames.write(protocol.AUDIO_HEAD, protocol.b64encode(pcm), protocol.AUDIO_TAIL) is True
            await ws.close()
        for _ in range(100):
            if len(got) == len(bodies) + 2:
                break
            await asyncio.sleep(0.01)
        assert [data for _, data in got] == [f'{{"a":"{b.decode()}"}}' for b in bodies] + [
            "after", protocol.audio_payload(pcm).decode()]
        assert all(t is aiohttp.WSMsgType.TEXT for t, _ in got)
    finally:
        await server.close()


async def test_a_closing_socket_is_left_to_aiohttp() -> None:
    server, _ = await _echo_server()
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(server.make_url("/"), compress=0) as ws:
            frames = FrameWriter(ws)
            await ws.close()
            assert frames.write(b"{", b"", b"}") is False  # the caller then sends through aiohttp, which raises
    finally:
        await server.close()


async def test_a_compressed_socket_is_left_to_aiohttp() -> None:
    server, _ = await _echo_server()
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(server.make_url("/"), compress=15) as ws:
            frames = FrameWriter(ws)
            if ws.compress:  # the server agreed to compress: frames must go through aiohttp's compressor
                assert frames.write(b"{", b"", b"}") is False
    finally:
        await server.close()


async def test_a_server_writes_plain_frames_a_client_reads_as_aiohttps() -> None:
    payloads = [b"", b"x" * 100, b"y" * 3000, b"z" * 70_000]

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        frames = FrameWriter(ws)
        for p in payloads:
            assert frames.send(p) is True
        await ws.send_bytes(b"aiohttp's")
        assert frames.send(b"\x00\x01", opcode=BINARY) is True
        await ws.receive()
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    server = TestServer(app)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(server.make_url("/"), max_msg_size=0) as ws:
            got = [await ws.receive() for _ in range(len(payloads) + 2)]
        assert [(m.type, m.data) for m in got] == [(aiohttp.WSMsgType.TEXT, p.decode()) for p in payloads] + [
            (aiohttp.WSMsgType.BINARY, b"aiohttp's"), (aiohttp.WSMsgType.BINARY, b"\x00\x01")]
    finally:
        await server.close()
