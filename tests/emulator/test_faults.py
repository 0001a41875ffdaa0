"""Fault injection, switched on through `app[FAULTS]` and through the HTTP control routes."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from .conftest import API_KEY, Emulator
from .helpers import drain, of_type

EMMA = "YTpq7expH9539ERJ"
TTS_SETUP = {"type": "setup", "voice_id": EMMA, "output_format": "pcm_8000"}
KEY = {"x-api-key": API_KEY}


async def run_tts(emulator: Emulator, text: str = "some words to speak") -> tuple[list[dict], int | None]:
    async with emulator.ws("tts") as ws:
        await ws.send_json(TTS_SETUP)
        await ws.send_json({"type": "text", "text": text})
        await ws.send_json({"type": "end_of_stream"})
        msgs = await drain(ws)
        return msgs, ws.close_code


async def set_faults(emulator: Emulator, **changes: object) -> dict:
    async with emulator.http.post(f"{emulator.base}/_emulator/faults", json=changes) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_error_after_n_messages(emulator: Emulator) -> None:
    emulator.faults.error_after_messages = 3
    emulator.faults.error_code = 1011
    emulator.faults.error_message = "worker died"
    msgs, code = await run_tts(emulator)
    assert [m["type"] for m in msgs[:3]] == ["ready", "text", "audio"]
    assert msgs[3] == {"type": "error", "message": "worker died", "code": 1011}
    assert len(msgs) == 4
    assert code == 1011


async def test_error_after_messages_over_http_and_sdk_raises(emulator: Emulator) -> None:
    await set_faults(emulator, error_after_messages=1, error_code=1008, error_message="Session too long")
    with pytest.raises(Exception, match=r"Session too long \(1008\)"):
        await emulator.sdk().tts({"voice_id": EMMA, "output_format": "pcm"}, "hello")


async def test_drop_after_n_messages_has_no_close_frame(emulator: Emulator) -> None:
    await set_faults(emulator, drop_after_messages=2)
    async with emulator.ws("tts") as ws:
        await ws.send_json(TTS_SETUP)
        await ws.send_json({"type": "text", "text": "dropped mid stream"})
        await ws.send_json({"type": "end_of_stream"})
        received = []
        async with asyncio.timeout(5):
            while True:
                msg = await ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                received.append(msg.json())
    assert len(received) == 2
    assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)  # no CLOSE frame
    assert ws.close_code != 1000


async def test_ready_delay_and_first_audio_delay(emulator: Emulator) -> None:
    # Observable without timing the wall clock: while the delay runs, nothing arrives.
    emulator.faults.ready_delay_s = 0.3
    async with emulator.ws("tts") as ws:
        await ws.send_json(TTS_SETUP)
        with pytest.raises(asyncio.TimeoutError):
            await ws.receive(timeout=0.05)
        assert (await ws.receive_json(timeout=5))["type"] == "ready"
    emulator.faults.reset()
    emulator.faults.first_audio_delay_s = 0.3
    async with emulator.ws("tts") as ws:
        await ws.send_json(TTS_SETUP)
        await ws.send_json({"type": "text", "text": "late"})
        assert (await ws.receive_json(timeout=5))["type"] == "ready"
        with pytest.raises(asyncio.TimeoutError):
            await ws.receive(timeout=0.05)
        assert (await ws.receive_json(timeout=5))["type"] in ("text", "audio")


async def test_slow_stream(emulator: Emulator) -> None:
    await set_faults(emulator, frame_delay_s=0.2)
    async with emulator.ws("tts") as ws:
        await ws.send_json(TTS_SETUP)
        await ws.send_json({"type": "text", "text": "slow"})
        await ws.send_json({"type": "end_of_stream"})
        first = [await ws.receive_json(timeout=5) for _ in range(2)]
        assert [m["type"] for m in first] == ["ready", "text"]
        with pytest.raises(asyncio.TimeoutError):  # each audio frame waits 200 ms
            await ws.receive(timeout=0.05)
        assert (await ws.receive_json(timeout=5))["type"] == "audio"


@pytest.mark.parametrize(
    ("shape", "content_type", "body"),
    [
        ("plain", "text/plain", "error from server 1011: overloaded"),
        ("raw", "text/plain", "overloaded"),
        ("json_error", "application/json", {"error": "overloaded", "code": 503}),
        ("json_detail", "application/json", {"detail": "overloaded"}),
    ],
)
async def test_http_status_override(emulator: Emulator, shape: str, content_type: str, body: object) -> None:
    await set_faults(emulator, http_status=503, http_error_shape=shape, http_error_message="overloaded")
    req = {"text": "x", "voice_id": EMMA, "only_audio": True}
    async with emulator.http.post(f"{emulator.api}post/speech/tts", json=req, headers=KEY) as resp:
        assert resp.status == 503
        assert resp.content_type == content_type
        got = await (resp.json() if content_type == "application/json" else resp.text())
    assert got == body


async def test_http_status_reaches_the_sdk_as_its_reason(emulator: Emulator) -> None:
    await set_faults(emulator, http_status=402, http_error_shape="json_detail", http_error_message="No credits")
    with pytest.raises(aiohttp.ClientResponseError) as info:
        await emulator.sdk().credits()
    assert info.value.status == 402 and info.value.message == "No credits"


async def test_times_and_match_path(emulator: Emulator) -> None:
    await set_faults(emulator, http_status=500, match_path="/voices", times=1)
    async with emulator.http.get(f"{emulator.api}usages/credits", headers=KEY) as resp:
        assert resp.status == 200  # path does not match: untouched, and not counted
    async with emulator.http.get(f"{emulator.api}voices/", headers=KEY) as resp:
        assert resp.status == 500
    async with emulator.http.get(f"{emulator.api}voices/", headers=KEY) as resp:
        assert resp.status == 200  # used up: the fault reset itself
    async with emulator.http.get(f"{emulator.base}/_emulator/faults") as resp:
        assert (await resp.json())["http_status"] is None


async def test_ws_reject_status(emulator: Emulator) -> None:
    emulator.faults.ws_reject_status = 403
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        async with emulator.ws("tts"):
            pass
    assert info.value.status == 403


async def test_rest_stream_faults(emulator: Emulator) -> None:
    emulator.faults.error_after_messages = 2
    req = {"text": "several words of audio", "voice_id": EMMA, "output_format": "pcm_8000"}
    async with emulator.http.post(f"{emulator.api}post/speech/tts", json=req, headers=KEY) as resp:
        lines = (await resp.read()).splitlines()
    assert len(lines) == 3 and b'"type":"error"' in lines[2]
    emulator.faults.reset()
    emulator.faults.drop_after_messages = 1
    with pytest.raises(aiohttp.ClientPayloadError):
        async with emulator.http.post(
            f"{emulator.api}post/speech/tts", json=req | {"only_audio": True}, headers=KEY
        ) as resp:
            await resp.read()


async def test_stt_faults_apply_to_steps(emulator: Emulator) -> None:
    emulator.faults.error_after_messages = 4
    async with emulator.ws("asr") as ws:
        await ws.send_json({"type": "setup", "input_format": "pcm"})
        await ws.send_json({"type": "audio", "audio": "AAAA" * 4000})  # 6000 samples: 3 steps
        await ws.send_json({"type": "end_of_stream"})  # the 4th step would complete the frame
        msgs = await drain(ws)
    assert [m["type"] for m in msgs] == ["ready", "step", "step", "step", "error"]


async def test_bad_fault_json_is_400_and_delete_resets(emulator: Emulator) -> None:
    async with emulator.http.post(f"{emulator.base}/_emulator/faults", json={"nope": 1}) as resp:
        assert resp.status == 400
        assert "unknown fault" in (await resp.json())["detail"]
    async with emulator.http.post(f"{emulator.base}/_emulator/faults", json={"ready_delay_s": -1}) as resp:
        assert resp.status == 400
    await set_faults(emulator, error_after_messages=0)
    async with emulator.http.delete(f"{emulator.base}/_emulator/faults") as resp:
        assert (await resp.json())["error_after_messages"] is None
    msgs, code = await run_tts(emulator, "fine again")
    assert code == 1000 and msgs[-1]["type"] == "end_of_stream"


async def test_stats_record_setups(emulator: Emulator) -> None:
    await run_tts(emulator)
    async with emulator.http.get(f"{emulator.base}/_emulator/stats") as resp:
        stats = await resp.json()
    assert stats["sessions"] == {"speech/tts": 1}
    assert stats["setups"][-1]["setup"] == TTS_SETUP
    assert stats["setups"][-1]["key_id"] and API_KEY not in str(stats)
    assert stats["ws_connections"] == 1 and stats["messages_out"] >= 3
    msgs, _ = await run_tts(emulator)
    assert len(of_type(msgs, "end_of_stream")) == 1
