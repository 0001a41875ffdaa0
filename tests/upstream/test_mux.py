"""Several requests over one Gradium socket, against the emulator."""

from __future__ import annotations

import asyncio
import base64

import pytest

from gateway.emulator.faults import FAULTS
from gateway.emulator.stats import STATS
from gateway.errors import GatewayError
from gateway.upstream.gradium import GradiumClient
from gateway.upstream.mux import GradiumMux
from tests.audiocheck import decode, expected_words, words
from tests.conftest import Emulator

EMMA = "YTpq7expH9539ERJ"


async def speak(mux: GradiumMux, text: str) -> bytes:
    stream = await mux.open({"voice_id": EMMA, "output_format": "pcm_16000"})
    for word in text.split():
        await stream.send({"type": "text", "text": word})
        await asyncio.sleep(0)
    await stream.send({"type": "end_of_stream"})
    audio = [base64.b64decode(m["audio"]) async for m in stream if m["type"] == "audio"]
    return b"".join(audio)


async def test_interleaved_requests_share_one_socket(client: GradiumClient, emulator: Emulator) -> None:
    mux = GradiumMux(client, "tts", "gsk_test")
    texts = ["first request here", "second one now", "and a third"]
    results = await asyncio.gather(*(speak(mux, t) for t in texts))
    for text, audio in zip(texts, results, strict=True):
        assert words(decode(audio, "s16le", 16000).pcm, 16000) == expected_words(text)
    assert emulator.app[STATS].ws_connections == 1
    # the socket stays open for more
    assert words(decode(await speak(mux, "once more"), "s16le", 16000).pcm, 16000) == ["once", "more"]
    assert emulator.app[STATS].ws_connections == 1
    await mux.close()


async def test_dropped_request_does_not_disturb_the_others(client: GradiumClient) -> None:
    mux = GradiumMux(client, "tts", "gsk_test")
    dropped = await mux.open({"voice_id": EMMA, "output_format": "pcm_16000"})
    await dropped.send({"type": "text", "text": "never mind this"})
    await dropped.close()
    assert await speak(mux, "still fine")
    await mux.close()


async def test_socket_failure_reaches_every_request(client: GradiumClient, emulator: Emulator) -> None:
    emulator.app[FAULTS].update({"drop_after_messages": 3})
    mux = GradiumMux(client, "tts", "gsk_test")
    results = await asyncio.gather(speak(mux, "one two three four five"), speak(mux, "six seven eight"),
                                   return_exceptions=True)
    assert all(isinstance(r, GatewayError) for r in results)
    with pytest.raises(GatewayError):
        await mux.open({"voice_id": EMMA})
    await mux.close()
