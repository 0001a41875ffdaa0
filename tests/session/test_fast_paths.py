"""The per-frame fast paths engage on the installed aiohttp.

Both rely on aiohttp internals (listed where they are used, `gateway/wsinbox.py` and `gateway/wsframe.py`):
frames handled where aiohttp parses them, on the client's socket and on Gradium's, and frames written
straight to the transport, to the client and to Gradium (masked). Where aiohttp looks different they fall
back to its public path without a word: every frame still arrives, each through a woken task or aiohttp's
send coroutines. The other tests pass either way, so these count, in a real session through a gateway on
loopback, which path each frame took, and fail when a fast path stopped engaging (an aiohttp upgrade that
moved an internal).
"""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from typing import Any

import aiohttp
import orjson
import pytest

from gateway.session.driver import Driver
from gateway.session.port import AiohttpPort
from gateway.session.upstreams import Upstreams
from gateway.wsframe import FrameWriter
from gateway.wsinbox import inbox_of
from tests.audiocheck import speech
from tests.conftest import Gateway

CHUNK = 2560  # 80 ms of 16 kHz s16le
DG_STT = "/v1/listen?encoding=linear16&sample_rate=16000&interim_results=true"
EL_TTS = "/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM/stream-input?output_format=pcm_16000"


class PathSpy:
    """Counts, by wrapping the gateway's own entry points (their results unchanged), which path frames take:
    `*_inline` / `*_left` for a frame a sink took where it was parsed, or left to the reading task;
    `*_direct` / `*_via_aiohttp` for a frame `FrameWriter` wrote to the transport, or declined."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.counts: Counter[str] = Counter()
        self.inboxes: list[str] = []  # per socket the gateway made: "client"/"gradium" with or without an inbox
        self._side: dict[int, str] = {}  # id(FrameWriter) -> "client" | "gradium"
        counts = self.counts

        real_port = AiohttpPort.__init__

        def port_init(port: AiohttpPort, ws: Any) -> None:
            real_port(port, ws)
            self.inboxes.append("client:" + ("inbox" if port.inbox is not None else "aiohttp_queue"))

        real_take = Driver._take_frame

        def take_frame(driver: Driver, msg: Any) -> Any:
            left = real_take(driver, msg)
            counts["client_in_inline" if left is None else "client_in_left"] += 1
            return left

        real_sink = Upstreams._sink

        def sink_of(upstreams: Upstreams, r: Any, upstream: Any) -> Any:
            sink = real_sink(upstreams, r, upstream)

            def counted(msg: Any) -> Any:
                left = sink(msg)
                counts["gradium_in_inline" if left is None else "gradium_in_left"] += 1
                return left

            return counted

        real_writer = FrameWriter.__init__

        def writer_init(fw: FrameWriter, ws: Any) -> None:
            real_writer(fw, ws)
            gradium = isinstance(ws, aiohttp.ClientWebSocketResponse)
            self._side[id(fw)] = "gradium" if gradium else "client"
            if gradium:
                self.inboxes.append("gradium:" + ("inbox" if inbox_of(ws) is not None else "aiohttp_queue"))

        monkeypatch.setattr(AiohttpPort, "__init__", port_init)
        monkeypatch.setattr(Driver, "_take_frame", take_frame)
        monkeypatch.setattr(Upstreams, "_sink", sink_of)
        monkeypatch.setattr(FrameWriter, "__init__", writer_init)
        for name in ("write_masked_text", "write", "send"):
            real = getattr(FrameWriter, name)

            def write(fw: FrameWriter, *a: Any, real: Any = real, **k: Any) -> Any:
                sent = real(fw, *a, **k)
                side = self._side.get(id(fw), "unknown")
                counts[f"{side}_out_via_aiohttp" if sent is False else f"{side}_out_direct"] += 1
                return sent

            monkeypatch.setattr(FrameWriter, name, write)


def _engaged(spy: PathSpy) -> None:
    """Every socket got an inbox, and no frame was declined by `FrameWriter` (the counts say which did not)."""
    c = spy.counts
    assert spy.inboxes and all(i.endswith(":inbox") for i in spy.inboxes), (spy.inboxes, dict(c))
    assert c["client_out_via_aiohttp"] == 0 and c["gradium_out_via_aiohttp"] == 0, dict(c)
    assert c["unknown_out_direct"] == 0 and c["unknown_out_via_aiohttp"] == 0, dict(c)


async def test_a_live_stt_session_takes_the_fast_paths(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    """Deepgram live STT: the client's audio frames are handled where parsed and written to Gradium directly
    (masked), Gradium's steps and words are handled where parsed, the results go to the client directly."""
    spy = PathSpy(monkeypatch)
    audio = speech("one two three four", 16000)
    chunks = len(audio) // CHUNK
    results = 0
    async with aiohttp.ClientSession() as s, s.ws_connect(gateway.ws + DG_STT, protocols=("token", "gsk_test")) as ws:
        for i in range(0, len(audio), CHUNK):
            await ws.send_bytes(audio[i:i + CHUNK])
            await asyncio.sleep(0.005)  # a live client: the gateway waits for the next frame, as in production
        await ws.send_str('{"type": "CloseStream"}')
        async for msg in ws:
            results += orjson.loads(msg.data).get("type") == "Results"
    c = spy.counts
    assert results > 0, dict(c)
    _engaged(spy)
    # most client frames are taken where parsed (the first waits for Gradium's socket to open, and a frame
    # that comes while the reader is busy is read by it, in order); aiohttp's path takes none
    assert c["client_in_inline"] >= chunks // 2, dict(c)
    assert c["gradium_out_direct"] >= chunks // 2, dict(c)  # the audio, one masked frame per chunk
    assert c["gradium_in_inline"] > 0, dict(c)
    assert c["client_out_direct"] >= results, dict(c)


async def test_a_tts_stream_takes_the_fast_paths(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    """ElevenLabs stream-input TTS: the client's text frames are handled where parsed, the text goes to
    Gradium directly, Gradium's audio is handled where parsed and goes to the client directly."""
    spy = PathSpy(monkeypatch)
    texts = ["Hello there ", "this is a test ", "of the fast paths. "]
    audio = 0
    async with aiohttp.ClientSession() as s, s.ws_connect(gateway.ws + EL_TTS, headers={"xi-api-key": "gsk_test"}) \
            as ws:
        await ws.send_json({"text": " "})
        for t in texts:
            await ws.send_json({"text": t})
            await asyncio.sleep(0.01)
        await ws.send_json({"text": ""})
        async for msg in ws:
            data = orjson.loads(msg.data)
            if data.get("audio"):
                audio += len(base64.b64decode(data["audio"]))
    c = spy.counts
    assert audio > 0, dict(c)
    _engaged(spy)
    # a frame whose commands must wait (the first: Gradium's socket opens) is left to the reader, in order
    assert c["client_in_inline"] > 0, dict(c)
    assert c["gradium_out_direct"] >= 1, dict(c)  # the text (and its flush) to Gradium
    assert c["gradium_in_inline"] > 0, dict(c)  # Gradium's audio
    assert c["client_out_direct"] > 0, dict(c)
