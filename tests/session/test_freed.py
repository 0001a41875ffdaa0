"""An ended session is freed by reference counting, not left to the garbage collector.

A session in a reference cycle (an exception kept by a task, whose traceback holds a frame that holds the task)
waits, with everything it holds, for a collection: at 1,000 live STT streams, ~33 sessions end a second, and the
collections that freed them walked hundreds of thousands of objects (middle-generation pauses of 20-50 ms, the
word latency's p99). Each case runs sessions with the collector off and asks it what only it could free."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable

import aiohttp
import orjson
import pytest

from gateway.emulator.faults import FAULTS
from tests.audiocheck import speech
from tests.conftest import Gateway
from tests.gateway.test_elevenlabs_protocol import RT, XI, chunk_msgs

VOICE = "21m00Tcm4TlvDq8ikWAM"
DG = {"Authorization": "Token x"}
DG_LIVE = "/v1/listen?encoding=linear16&sample_rate=16000"


async def el_realtime_client_closes(gw: Gateway) -> None:
    msgs = chunk_msgs(speech("One commit here", 16000))
    msgs[-1]["commit"] = True
    async with aiohttp.ClientSession() as s, s.ws_connect(gw.ws + RT, headers=XI) as ws:
        for m in msgs:
            await ws.send_json(m)
        while (msg := await ws.receive(timeout=5)).type == aiohttp.WSMsgType.TEXT:
            if orjson.loads(msg.data).get("message_type") == "committed_transcript":
                break  # and the client closes its socket: the gateway's reader sees it closed


async def dg_live_close_stream(gw: Gateway) -> None:
    audio = speech("hello world again", 16000)
    async with aiohttp.ClientSession() as s, s.ws_connect(gw.ws + DG_LIVE, headers=DG) as ws:
        for i in range(0, len(audio), 3200):
            await ws.send_bytes(audio[i : i + 3200])
        await ws.send_str('{"type":"CloseStream"}')
        _ = [m async for m in ws]


async def dg_live_client_leaves(gw: Gateway) -> None:
    audio = speech("hello world again", 16000)
    async with aiohttp.ClientSession() as s, s.ws_connect(gw.ws + DG_LIVE, headers=DG) as ws:
        for i in range(0, 32000, 3200):
            await ws.send_bytes(audio[i : i + 3200])
        await asyncio.sleep(0.3)  # the audio reached Gradium: the session is live when the client goes


async def el_stream_input(gw: Gateway) -> None:
    path = f"/v1/text-to-speech/{VOICE}/stream-input?output_format=pcm_16000"
    async with aiohttp.ClientSession() as s, s.ws_connect(gw.ws + path, headers=XI) as ws:
        for m in ({"text": " "}, {"text": "Hello there. "}, {"text": ""}):
            await ws.send_str(orjson.dumps(m).decode())
        _ = [m async for m in ws]


async def el_stream_input_gradium_drops(gw: Gateway) -> None:
    gw.emulator.app[FAULTS].update({"drop_after_messages": 3})
    await el_stream_input(gw)


async def el_stream_input_gradium_errors(gw: Gateway) -> None:
    gw.emulator.app[FAULTS].update({"error_after_messages": 3})
    await el_stream_input(gw)


# aiohttp keeps a failed socket's exception on the socket or its reader queue (`_exception`), whose traceback holds
# the frame that holds them: a cycle of aiohttp's own. After Gradium failed mid-stream, the client socket's reader
# queue (`Inbox`, an aiohttp queue) is in one; it no longer holds anything of the session (its sink is cleared).
AIOHTTP_CYCLES = {"gateway.wsinbox.Inbox"}


def gateway_garbage(found: list[object]) -> list[str]:
    """The gateway's objects among what only the collector could free (the test's own client, the emulator
    and asyncio's selector transports have cycles of their own)."""
    return sorted({name for o in found if (name := type(o).__module__ + "." + type(o).__qualname__).startswith(
        "gateway.") and not name.startswith("gateway.emulator") and name not in AIOHTTP_CYCLES})


@pytest.mark.parametrize("session", [el_realtime_client_closes, dg_live_close_stream, dg_live_client_leaves,
                                     el_stream_input, el_stream_input_gradium_drops,
                                     el_stream_input_gradium_errors], ids=lambda f: f.__name__)
async def test_an_ended_session_is_freed_by_reference_counting(gateway: Gateway,
                                                               session: Callable[[Gateway], Awaitable[None]]) -> None:
    await session(gateway)  # warm: pools, lazy imports, caches
    await asyncio.sleep(0.2)
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what a collection finds is kept in gc.garbage, to be looked at
    gc.disable()
    try:
        for _ in range(3):
            await session(gateway)
        await asyncio.sleep(0.3)  # the gateway's side of each session ends after the client's
        gc.collect()
        found = list(gc.garbage)
    finally:
        gc.garbage.clear()
        gc.set_debug(0)
        gc.enable()
    assert gateway_garbage(found) == []
