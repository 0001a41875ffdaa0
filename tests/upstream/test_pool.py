"""Gradium sockets are reused across requests, and a pooled socket that died while idle is replaced."""

from __future__ import annotations

import asyncio
import base64

import aiohttp
import pytest

from gateway.dialects.common import GRADIUM
from gateway.emulator.faults import FAULTS
from gateway.emulator.stats import STATS
from gateway.upstream.errors import UpstreamClosed
from gateway.upstream.gradium import GradiumClient
from tests.audiocheck import decode, expected_words, speech, words
from tests.conftest import Emulator, Gateway

EMMA = "YTpq7expH9539ERJ"


async def speak(client: GradiumClient, text: str, key: str = "gsk_a") -> list[str]:
    stream = await client.open_ws("tts", {"voice_id": EMMA, "output_format": "pcm_16000"}, key)
    await stream.send({"type": "text", "text": text})
    await stream.send({"type": "end_of_stream"})
    audio = b"".join([base64.b64decode(m["audio"]) async for m in stream if m["type"] == "audio"])
    await stream.close()
    return words(decode(audio, "s16le", 16000).pcm, 16000)


async def test_sequential_requests_reuse_one_socket(client: GradiumClient, emulator: Emulator) -> None:
    assert await speak(client, "one") == ["one"]
    assert await speak(client, "two") == ["two"]
    assert await speak(client, "three", key="gsk_b") == ["three"]  # pools are per key
    assert emulator.app[STATS].ws_connections == 2 and client.reused == 1


async def test_a_pooled_socket_that_fails_first_is_replayed_on_a_new_one(client: GradiumClient,
                                                                         emulator: Emulator) -> None:
    stats = emulator.app[STATS]
    assert await speak(client, "warm up") == expected_words("warm up")
    per_request = stats.messages_out
    await client.close_idle()
    # the next connection dies right after one whole request: when its pooled socket is reused
    emulator.app[FAULTS].update({"drop_after_messages": per_request, "times": 1})
    assert await speak(client, "warm up") == expected_words("warm up")
    assert await speak(client, "replayed fine") == expected_words("replayed fine")
    assert client.reused == 1 and stats.ws_connections == 3 and stats.faults_applied == 1


async def test_the_pool_keeps_as_many_idle_sockets_as_were_in_use(client: GradiumClient,
                                                                   emulator: Emulator) -> None:
    """Sessions run back to back hand their sockets on: 24 at once reuse all 24 (a fixed cap kept 16)."""
    import asyncio

    async def request() -> int:
        stream = await client.open_ws("tts", {"voice_id": EMMA, "output_format": "pcm_16000"}, "gsk_a")
        await stream.send({"type": "text", "text": "one"})
        await stream.send({"type": "end_of_stream"})
        n = sum([1 async for m in stream if m["type"] == "audio"])
        await stream.close()
        return n

    for _ in range(2):
        assert all(await asyncio.gather(*(request() for _ in range(24))))
        assert client.idle_count() == 24 and client.in_use == 0
    assert emulator.app[STATS].ws_connections == 24 and client.reused == 24


async def test_abandoned_requests_do_not_return_to_the_pool(client: GradiumClient, emulator: Emulator) -> None:
    stream = await client.open_ws("tts", {"voice_id": EMMA}, "gsk_a")
    await stream.send({"type": "text", "text": "abandoned"})
    await stream.close()  # mid-request: Gradium may still be talking on it
    assert await speak(client, "fresh") == ["fresh"]
    assert client.reused == 0


async def test_gateway_reuses_upstream_sockets(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as s:
        for text in ("first", "second", "third"):
            async with s.post(gateway.http + "/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM?output_format=pcm_16000",
                              json={"text": text}, headers={"xi-api-key": "gsk_pool"}) as r:
                assert r.status == 200
                assert words(decode(await r.read(), "s16le", 16000).pcm, 16000) == [text]
    assert gateway.emulator.app[STATS].ws_connections == 1


async def test_idle_sockets_are_swept_on_a_timer(emulator: Emulator) -> None:
    """Issue 8, defect 13: an idle pooled socket is closed after `pool_idle_s` even if its key never returns."""
    session = aiohttp.ClientSession()
    client = GradiumClient(session, emulator.url, pool_idle_s=0.3)
    try:
        for key in ("gsk_once_a", "gsk_once_b"):
            assert await speak(client, "one", key=key) == ["one"]
        assert client.idle_count() == 2
        for _ in range(100):
            if client.idle_count() == 0 and emulator.app[STATS].ws_active == 0:
                break
            await asyncio.sleep(0.05)
        assert client.idle_count() == 0 and emulator.app[STATS].ws_active == 0
        assert client._idle == {}  # no entry left behind per key either
    finally:
        await client.close_idle()
        await session.close()


async def test_a_finished_request_goes_back_to_the_pool_at_once_and_an_unfinished_one_does_not(
        client: GradiumClient, emulator: Emulator) -> None:
    """`close_now`: an ended request's socket returns to the pool with no I/O (the session releases it
    without a task); one still talking needs `close` (its close handshake) and is never pooled."""
    stream = await client.open_ws("tts", {"voice_id": EMMA, "output_format": "pcm_16000"}, "gsk_a")
    await stream.send({"type": "text", "text": "one"})
    await stream.send({"type": "end_of_stream"})
    assert [m["type"] async for m in stream][-1] == "end_of_stream"  # read to its end
    assert stream.close_now() and stream.close_now()  # done, and a second call is a no-op
    busy = await client.open_ws("tts", {"voice_id": EMMA}, "gsk_a")
    assert client.reused == 1
    await busy.send({"type": "text", "text": "abandoned"})
    assert not busy.close_now()
    await busy.close()
    assert await speak(client, "fresh") == ["fresh"]
    assert client.reused == 1 and emulator.app[STATS].ws_connections == 2


async def test_an_abandoned_speech_to_text_request_is_ended_and_its_socket_pooled(
        client: GradiumClient, emulator: Emulator) -> None:
    """A live STT client that leaves mid-request (an ElevenLabs realtime client after its commit): the
    gateway ends the request on Gradium's side and pools the socket, so the next request skips the
    handshakes; the next request on it hears only its own words."""
    stream = await client.open_ws("asr", {"input_format": "pcm_16000"}, "gsk_a")
    assert (await stream.recv() or {}).get("type") == "ready"
    await stream.send_audio(speech("one two", 16000))
    await stream.close()  # mid-request: no end_of_stream from the client
    for _ in range(200):
        if client.idle_count() == 1:
            break
        await asyncio.sleep(0.02)
    assert client.idle_count() == 1
    again = await client.open_ws("asr", {"input_format": "pcm_16000"}, "gsk_a")
    await again.send_audio(speech("three", 16000))
    await again.send({"type": "end_of_stream"})
    msgs = [m async for m in again]
    await again.close()
    assert [m["text"] for m in msgs if m["type"] == "text"] == expected_words("three")
    assert client.reused == 1 and emulator.app[STATS].ws_connections == 1


async def test_realtime_stt_sessions_reuse_the_gradium_socket(gateway: Gateway) -> None:
    """ElevenLabs realtime STT: the client leaves after its committed transcript, the request still open
    on Gradium's side; the next session gets the same Gradium socket, not a new connection."""
    pcm = speech("one two", 16000)
    url = gateway.ws + "/v1/speech-to-text/realtime?model_id=scribe_v2_realtime&audio_format=pcm_16000"
    async with aiohttp.ClientSession() as s:
        for _ in range(3):
            async with s.ws_connect(url, headers={"xi-api-key": "gsk_rt_pool"}) as ws:
                await ws.send_json({"message_type": "input_audio_chunk", "commit": True,
                                    "audio_base_64": base64.b64encode(pcm).decode()})
                async for msg in ws:
                    data = msg.json()
                    if data["message_type"] == "committed_transcript":
                        assert data["text"].lower().split() == expected_words("one two")
                        break
            for _ in range(200):  # the retirement runs after the session
                if gateway.app[GRADIUM].idle_count() == 1:
                    break
                await asyncio.sleep(0.02)
    assert gateway.emulator.app[STATS].ws_connections == 1


async def test_a_stream_closed_by_another_task_ends_its_reads_cleanly(client: GradiumClient) -> None:
    """An HTTP upload whose audio turns out bad closes the Gradium stream from its feeder task while the
    response task reads it: that read, or the next one, ends with `UpstreamClosed` (a GatewayError the route
    turns into the caller's 400), never aiohttp's "Concurrent call to receive()" raised because the socket's
    retirement reads it too (a 500, seen in the fuzz run)."""
    setup = {"model_name": "default", "input_format": "pcm_16000"}
    first = await client.open_ws("asr", setup, "gsk_a")
    await first.send({"type": "end_of_stream"})
    assert [m["type"] async for m in first][-1] == "end_of_stream"
    await first.close()
    for read_first in (True, False):
        stream = await client.open_ws("asr", setup, "gsk_a")  # pooled, the common case under load
        assert (await stream.recv() or {}).get("type") == "ready" and stream.request_id
        reading = asyncio.ensure_future(stream.recv()) if read_first else None
        await asyncio.sleep(0.01)
        await stream.close()
        with pytest.raises(UpstreamClosed):
            await asyncio.wait_for(reading or stream.recv(), 5)
    assert client.reused >= 1
