"""ElevenLabs socket semantics the SDKs do not pin down, checked frame by frame: the multi-context socket
(contexts on one Gradium socket, keep-alives, flush vs close_context, both key casings, close_socket),
chunk_length_schedule buffering on stream-input, and realtime STT commits."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import aiohttp
import numpy as np
import orjson
import pytest

from gateway.audio import g711
from gateway.audio.formats import MULAW
from gateway.emulator.stats import STATS
from tests.audiocheck import decode, expected_words, speech, words
from tests.conftest import Gateway

VOICE = "21m00Tcm4TlvDq8ikWAM"
XI = {"xi-api-key": "gsk_test"}


async def ws_session(gw: Gateway, path: str, messages: list[Any], *, headers: dict[str, str] | None = None,
                     pause: float = 0.0) -> tuple[list[Any], int | None]:
    """Send messages (dicts as JSON; a number sleeps that long) and collect every message until the close."""
    got: list[Any] = []
    async with aiohttp.ClientSession() as s, s.ws_connect(gw.ws + path, headers=XI if headers is None else headers) \
            as ws:
        for m in messages:
            if isinstance(m, int | float):
                await asyncio.sleep(m)
            else:
                await ws.send_str(orjson.dumps(m).decode())
                if pause:
                    await asyncio.sleep(pause)
        async for msg in ws:
            got.append(orjson.loads(msg.data))
        return got, ws.close_code


def pcm_of(msgs: list[Any], ctx: str | None = None) -> bytes:
    return b"".join(base64.b64decode(m["audio"]) for m in msgs
                    if m.get("audio") and (ctx is None or m.get("contextId") == ctx))


MULTI = f"/v1/text-to-speech/{VOICE}/multi-stream-input?output_format=pcm_16000&sync_alignment=true"


async def test_multi_context_socket(gateway: Gateway) -> None:
    stats = gateway.emulator.app[STATS]
    connections = stats.ws_connections
    got, close = await ws_session(gateway, MULTI, [
        {"text": " ", "context_id": "a", "voice_settings": {"speed": 1.1}},
        {"text": " ", "context_id": "b"},
        {"text": "Alpha speaks ", "context_id": "a"},
        {"text": "Bravo talks ", "context_id": "b"},
        {"text": ""},                                       # connection keep-alive: closes nothing
        {"text": "", "context_id": "a"},                    # context keep-alive
        {"context_id": "a", "flush": True},                 # Pipecat's flush: audio, no isFinal
        {"text": "", "context_id": "b", "flush": True},     # LiveKit's flush
        {"context_id": "a", "close_context": True},
        {"close_socket": True},
    ])
    assert close == 1000
    finals = [m for m in got if m.get("isFinal")]
    assert finals == [{"isFinal": True, "is_final": True, "contextId": c, "context_id": c} for c in ("a", "b")]
    for ctx, text in (("a", "Alpha speaks"), ("b", "Bravo talks")):
        assert words(decode(pcm_of(got, ctx), "s16le", 16000).pcm, 16000) == expected_words(text)
        chunks = [m for m in got if m.get("contextId") == ctx and m.get("alignment")]
        assert "".join(c for m in chunks for c in m["alignment"]["chars"]).strip() == text
        assert all(m["alignment"]["charStartTimesMs"][0] < 200 for m in chunks)  # restarts in every message
        assert all(m["context_id"] == ctx for m in got if m.get("contextId") == ctx)
    # both contexts went over one Gradium socket
    assert stats.ws_connections - connections == 1


async def test_multi_context_text_after_close_context_is_a_new_request_in_order(gateway: Gateway) -> None:
    got, close = await ws_session(gateway, MULTI, [
        {"text": "First part ", "context_id": "x"},
        {"context_id": "x", "close_context": True},
        {"text": "Second part ", "context_id": "x"},
        {"context_id": "x", "close_context": True},
        {"close_socket": True},
    ])
    assert close == 1000
    assert [m.get("isFinal") for m in got if m.get("isFinal")] == [True, True]
    first_final = next(i for i, m in enumerate(got) if m.get("isFinal"))
    assert words(decode(pcm_of(got[:first_final]), "s16le", 16000).pcm, 16000) == expected_words("First part")
    assert words(decode(pcm_of(got), "s16le", 16000).pcm, 16000) == expected_words("First part Second part")


async def test_sixth_context_is_refused(gateway: Gateway) -> None:
    msgs = [{"text": " ", "context_id": f"c{i}"} for i in range(6)]
    got, close = await ws_session(gateway, MULTI, msgs)
    assert close == 1008
    assert got[-1]["error"] == "max_active_conversations" and "(5)" in got[-1]["message"]
    # the gateway goes on serving
    got, close = await ws_session(gateway, MULTI, [{"text": "Still fine ", "context_id": "z"}, {"close_socket": True}])
    assert close == 1000 and got[-1]["isFinal"]


async def test_stream_input_chunk_length_schedule(gateway: Gateway) -> None:
    path = f"/v1/text-to-speech/{VOICE}/stream-input?output_format=pcm_16000"
    first = {"text": " ", "generation_config": {"chunk_length_schedule": [200]}}
    # below the schedule nothing is generated until the flush
    got, _ = await ws_session(gateway, path, [first, {"text": "Short text "}, 0.3, {"text": ""}])
    assert words(decode(pcm_of(got), "s16le", 16000).pcm, 16000) == expected_words("Short text")

    async with aiohttp.ClientSession() as s, s.ws_connect(gateway.ws + path, headers=XI) as ws:
        await ws.send_json(first)
        await ws.send_json({"text": "Held back "})
        try:
            msg = await ws.receive(timeout=0.4)
            early = msg.type == aiohttp.WSMsgType.TEXT
        except TimeoutError:
            early = False
        assert not early, "text below chunk_length_schedule was spoken before a flush"
        await ws.send_json({"text": "now ", "try_trigger_generation": True})  # 13 chars < 200: still held
        await ws.send_json({"text": "", "flush": True})
        msg = await ws.receive(timeout=5)
        assert orjson.loads(msg.data)["audio"]

    # auto_mode turns the schedule off: words go out at once
    async with aiohttp.ClientSession() as s, s.ws_connect(gateway.ws + path + "&auto_mode=true", headers=XI) as ws:
        await ws.send_json(first)
        await ws.send_json({"text": "Spoken at once "})
        msg = await ws.receive(timeout=5)
        assert orjson.loads(msg.data)["audio"]


async def test_stream_input_schedule_releases_text_as_it_fills(gateway: Gateway) -> None:
    path = f"/v1/text-to-speech/{VOICE}/stream-input?output_format=pcm_16000"
    async with aiohttp.ClientSession() as s, s.ws_connect(gateway.ws + path, headers=XI) as ws:
        await ws.send_json({"text": " ", "generation_config": {"chunk_length_schedule": [50, 120]}})
        await ws.send_json({"text": "This sentence is long enough to pass the first threshold of fifty. "})
        msg = await ws.receive(timeout=5)
        assert orjson.loads(msg.data)["audio"]


RT = "/v1/speech-to-text/realtime?model_id=scribe_v2_realtime&audio_format=pcm_16000"


def chunk_msgs(pcm: bytes, size: int = 3200) -> list[dict[str, Any]]:
    return [{"message_type": "input_audio_chunk", "audio_base_64": base64.b64encode(pcm[i : i + size]).decode(),
             "commit": False, "sample_rate": 16000} for i in range(0, len(pcm), size)]


async def realtime(gw: Gateway, query: str, messages: list[Any], until: int,
                   final: str = "committed_transcript") -> list[Any]:
    """Messages until `until` messages of type `final` arrived (or 5 s)."""
    got: list[Any] = []
    async with aiohttp.ClientSession() as s, s.ws_connect(gw.ws + RT + query, headers=XI) as ws:
        for m in messages:
            await ws.send_json(m)
        while sum(m.get("message_type") == final for m in got) < until:
            msg = await ws.receive(timeout=5)
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            got.append(orjson.loads(msg.data))
    return got


async def test_realtime_commit_in_the_audio_message_and_empty_commit(gateway: Gateway) -> None:
    msgs = chunk_msgs(speech("One commit", 16000))
    msgs[-1]["commit"] = True  # audio and commit in one message
    msgs.append({"message_type": "input_audio_chunk", "audio_base_64": "", "commit": True, "sample_rate": 16000})
    got = await realtime(gateway, "&include_language_detection=true", msgs, until=2,
                         final="committed_transcript_with_timestamps")
    assert got[0]["message_type"] == "session_started"
    commits = [m for m in got if m["message_type"].startswith("committed")]
    assert [(m["message_type"], m["text"]) for m in commits] == [
        ("committed_transcript", "One commit"),
        ("committed_transcript_with_timestamps", "One commit"),
        ("committed_transcript", ""),  # nothing since the last commit: LiveKit reads it as end of speech
        ("committed_transcript_with_timestamps", ""),
    ]
    assert "words" not in commits[1] and commits[1]["language_code"] == "eng"  # language detection only


async def test_realtime_bare_commit_message_and_keepalive(gateway: Gateway) -> None:
    keepalive = {"message_type": "input_audio_chunk", "audio_base_64": "", "commit": False, "sample_rate": 16000}
    msgs = [keepalive, *chunk_msgs(speech("Bare commit", 16000)), keepalive, {"message_type": "commit"}]
    got = await realtime(gateway, "", msgs, until=1)
    assert [m["text"] for m in got if m["message_type"] == "committed_transcript"] == ["Bare commit"]


DIALOGUE = "/v1/text-to-dialogue/multi-stream-input?model_id=eleven_v3&output_format=pcm_16000&sync_alignment=true"
GEORGE, JACK, EMMA = "JBFqnCBsd6RMkjVDRZzb", "m86j6D7UZpGzHsNu", "YTpq7expH9539ERJ"


async def test_dialogue_socket_each_input_its_own_voice_in_order(gateway: Gateway) -> None:
    got, close = await ws_session(gateway, DIALOGUE, [
        {"context_id": "d", "voices": [VOICE, GEORGE]},
        {"context_id": "d", "inputs": [{"text": "Hello there.", "voice_id": VOICE},
                                       {"text": "General Kenobi.", "voice_id": GEORGE}]},
        {"context_id": "d", "inputs": [{"text": "You are a bold one.", "voice_id": GEORGE}], "flush": True},
        {"context_id": "d", "keep_alive": True},
        {"context_id": "d", "close_context": True},
        {"close_socket": True},
    ])
    assert close == 1000
    assert [m for m in got if "is_final" in m] == [{"is_final": True, "context_id": "d"}]  # one, at the very end
    assert got[-1] == {"is_final": True, "context_id": "d"}
    text = "Hello there. General Kenobi. You are a bold one."
    assert words(decode(pcm_of_snake(got), "s16le", 16000).pcm, 16000) == expected_words(text)
    chars = "".join(c for m in got if m.get("alignment") for c in m["alignment"]["chars"])
    assert chars.split() == text.split()
    voices = [s["setup"]["voice_id"] for s in gateway.emulator.app[STATS].setups if s["route"] == "speech/tts"][-2:]
    assert voices == [EMMA, JACK]


def pcm_of_snake(msgs: list[Any]) -> bytes:
    return b"".join(base64.b64decode(m["audio"]) for m in msgs if m.get("audio"))


@pytest.mark.parametrize("audio_format", ["pcm_8000", "pcm_16000", "pcm_22050", "pcm_24000", "pcm_32000",
                                          "pcm_44100", "pcm_48000", "ulaw_8000"])
async def test_realtime_every_audio_format(gateway: Gateway, audio_format: str) -> None:
    rate = int(audio_format.split("_")[1])
    pcm = speech("Every format", rate)
    if audio_format.startswith("ulaw"):
        pcm = g711.encode(MULAW, np.frombuffer(pcm, "<i2")).tobytes()
    step = rate // 10 * (1 if audio_format.startswith("ulaw") else 2)
    msgs = [{"message_type": "input_audio_chunk", "audio_base_64": base64.b64encode(pcm[i : i + step]).decode(),
             "commit": False, "sample_rate": rate} for i in range(0, len(pcm), step)]
    msgs.append({"message_type": "commit"})
    got: list[Any] = []
    path = RT.replace("pcm_16000", audio_format)
    async with aiohttp.ClientSession() as s, s.ws_connect(gateway.ws + path, headers=XI) as ws:
        for m in msgs:
            await ws.send_json(m)
        while not any(m.get("message_type") == "committed_transcript" for m in got):
            got.append(orjson.loads((await ws.receive(timeout=5)).data))
    assert got[0]["config"]["audio_format"] == audio_format and got[0]["config"]["sample_rate"] == rate
    assert got[-1]["text"] == "Every format"
