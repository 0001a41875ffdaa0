"""WebSocket defects of issue 8 on the socket routes, fixed in the session runtime (gateway/session/)."""

from __future__ import annotations

import aiohttp
import pytest

from tests.conftest import Gateway


@pytest.mark.parametrize("path", ["/v1/listen?encoding=linear16&sample_rate=16000",
                                  "/v2/listen?encoding=linear16&sample_rate=16000"])
async def test_deepgram_live_ignores_text_that_is_not_json(gateway: Gateway, path: str) -> None:
    """Defect 9: Deepgram's docs say unknown text is ignored; the gateway closes 1008 on non-JSON text."""
    async with aiohttp.ClientSession() as s, s.ws_connect(gateway.ws + path,
                                                          headers={"Authorization": "Token k"}) as ws:
        await ws.send_str("hello, not JSON")
        await ws.send_str('{"type": "KeepAlive"}')
        await ws.send_str('{"type": "CloseStream"}')
        async for msg in ws:
            assert "SchemaError" not in str(msg.data), msg.data
        assert ws.close_code == 1000


@pytest.mark.parametrize("path", ["/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM/multi-stream-input?output_format=pcm_16000",
                                  "/v1/text-to-dialogue/multi-stream-input?output_format=pcm_16000"])
async def test_elevenlabs_context_ids_are_bounded(gateway: Gateway, path: str) -> None:
    """Defect 10: a 100 KB context_id is echoed on every message (3.4 MB out for 100 KB in)."""
    first = ({"text": "Hello there. ", "context_id": "z" * 100_000, "flush": True} if "speech" in path else
             {"context_id": "z" * 100_000, "inputs": [{"text": "Hi there", "voice_id": "21m00Tcm4TlvDq8ikWAM"}]})
    out = 0
    async with aiohttp.ClientSession() as s, s.ws_connect(gateway.ws + path, headers={"xi-api-key": "k"}) as ws:
        await ws.send_json(first)
        try:
            while True:
                msg = await ws.receive(timeout=3)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                out += len(msg.data)
        except TimeoutError:
            pass
    assert out < 250_000  # at most one error naming the context, never an echo per message


async def test_deepgram_speak_turns_after_a_flush_are_not_internal_errors(gateway: Gateway) -> None:
    """Found by the fuzzer: Flush then several Speak messages -> driver.py `_do(Turn)` touches `req.io`
    of a request not opened yet (AttributeError) -> 1011 "Internal gateway error"."""
    frames = ['{"type": "Flush"}', '{"type": "Speak", "text": "Hello there"}', "{}",
              '{"type": "Speak", "text": "Hello there"}', '{"type": "Speak", "text": "Hello again"}',
              '{"type": "Flush"}', '{"type": "Close"}']
    for _ in range(5):  # the race needs the upstream's timing; a few rounds make it near certain
        async with aiohttp.ClientSession() as s, s.ws_connect(gateway.ws + "/v1/speak?encoding=linear16",
                                                              headers={"Authorization": "Token k"}) as ws:
            for f in frames:
                await ws.send_str(f)
            texts = []
            try:
                while True:
                    msg = await ws.receive(timeout=5)
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    texts.append(msg.data)
            except TimeoutError:
                pass
            assert not any("Internal gateway error" in t for t in texts) and ws.close_code != 1011
