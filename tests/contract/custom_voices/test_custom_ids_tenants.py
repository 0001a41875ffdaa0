"""Managed mode: two tenants over one shared Gradium key never see or use each other's voices and
dictionaries; ids are derived (another gateway replica with the same config answers the same ids);
a single-use token carries its tenant to the WebSocket."""

from __future__ import annotations

import base64
import hashlib
import io
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from elevenlabs.client import AsyncElevenLabs
from elevenlabs.core.api_error import ApiError
from elevenlabs.pronunciation_dictionaries import (
    BodyAddAPronunciationDictionaryV1PronunciationDictionariesAddFromRulesPostRulesItem_Alias as Alias,
)
from elevenlabs.types import PronunciationDictionaryVersionLocator

from tests.audiocheck import decode, wav_bytes, words
from tests.conftest import Emulator, Gateway, gateway_settings, start_gateway

KEY_A, KEY_B = "tenant-a-key", "tenant-b-key"


def managed(emulator: Emulator, tls_files: dict[str, Path]) -> Any:
    return gateway_settings(
        emulator, tls_files,
        gradium={"base_url": emulator.url, "api_key": "gsk_shared_by_both"},
        auth={"mode": "managed", "tenants": {"a": {}, "b": {}},
              "keys": [{"sha256": hashlib.sha256(k.encode()).hexdigest(), "tenant": t}
                       for k, t in ((KEY_A, "a"), (KEY_B, "b"))]})


async def collect(stream: Any) -> bytes:
    return b"".join([chunk async for chunk in stream])


async def test_tenants_are_isolated_and_ids_derived(emulator: Emulator, tls_files: dict[str, Path]) -> None:
    settings = managed(emulator, tls_files)
    async with start_gateway(settings, emulator) as gw, start_gateway(settings, emulator) as replica:
        a, b = AsyncElevenLabs(api_key=KEY_A, base_url=gw.http), AsyncElevenLabs(api_key=KEY_B, base_url=gw.http)
        vid = (await a.voices.ivc.create(name="Mine", files=[("s.wav", io.BytesIO(wav_bytes("x", 24000)),
                                                               "audio/wav")])).voice_id
        dic = await a.pronunciation_dictionaries.create_from_rules(
            name="mine", rules=[Alias(string_to_replace="Acme", alias="ack me")])

        # another replica, same configuration: the same ids open the same objects
        a2 = AsyncElevenLabs(api_key=KEY_A, base_url=replica.http)
        assert (await a2.voices.get(vid)).name == "Mine"
        assert (await a2.pronunciation_dictionaries.get(dic.id)).latest_version_id == dic.version_id
        locator = [PronunciationDictionaryVersionLocator(pronunciation_dictionary_id=dic.id)]
        pcm = decode(await collect(a2.text_to_speech.convert(vid, text="Acme", output_format="pcm_24000",
                                                             pronunciation_dictionary_locators=locator)),
                     "s16le", 24000).pcm
        assert words(pcm, 24000) == ["ack", "me"]

        # tenant B: not listed, not readable, not usable, not editable, not deletable; same name is free
        assert vid not in [v.voice_id for v in (await b.voices.get_all()).voices]
        assert (await b.pronunciation_dictionaries.list()).pronunciation_dictionaries == []
        for call in (b.voices.get(vid), b.voices.update(vid, name="stolen"), b.voices.delete(vid),
                     collect(b.text_to_speech.convert(vid, text="hi"))):
            with pytest.raises(ApiError) as e:
                await call
            assert e.value.status_code == 400 and e.value.body["detail"]["status"] == "voice_not_found"
        with pytest.raises(ApiError) as e:
            await b.pronunciation_dictionaries.get(dic.id)
        assert e.value.status_code == 404
        with pytest.raises(ApiError) as e:
            await collect(b.text_to_speech.convert("21m00Tcm4TlvDq8ikWAM", text="hi",
                                                   pronunciation_dictionary_locators=locator))
        assert e.value.status_code == 404
        other = await b.voices.ivc.create(name="Mine", files=[("s.wav", io.BytesIO(wav_bytes("y", 24000)),
                                                               "audio/wav")])
        assert other.voice_id != vid
        assert [v.name for v in (await a.voices.get_all()).voices if v.category == "cloned"] == ["Mine"]

        # a single-use token minted by tenant A opens A's voice on the WebSocket, and not B's
        token = (await a.tokens.single_use.create("tts_websocket")).token
        async with aiohttp.ClientSession() as http, http.ws_connect(
                f"{gw.ws}/v1/text-to-speech/{vid}/stream-input?output_format=pcm_24000&single_use_token={token}"
        ) as ws:
            await ws.send_json({"text": " "})
            await ws.send_json({"text": "token works"})
            await ws.send_json({"text": ""})
            audio = b"".join(base64.b64decode(d["audio"]) for m in [x async for x in ws]
                             if (d := orjson.loads(m.data)).get("audio"))
        assert words(decode(audio, "s16le", 24000).pcm, 24000) == ["token", "works"]
        token_b = (await b.tokens.single_use.create("tts_websocket")).token
        async with aiohttp.ClientSession() as http, http.ws_connect(
                f"{gw.ws}/v1/text-to-speech/{vid}/stream-input?single_use_token={token_b}") as ws:
            await ws.send_json({"text": " "})
            msgs = [orjson.loads(m.data) for m in [x async for x in ws] if m.type == aiohttp.WSMsgType.TEXT]
        assert msgs and msgs[-1]["error"] == "voice_not_found"


async def test_forward_mode_each_key_its_own(gateway: Gateway) -> None:
    mine = AsyncElevenLabs(api_key="gsk_org_one", base_url=gateway.http)
    theirs = AsyncElevenLabs(api_key="gsk_org_two", base_url=gateway.http)
    vid = (await mine.voices.ivc.create(name="Org voice", files=[("s.wav", io.BytesIO(wav_bytes("x", 24000)),
                                                                  "audio/wav")])).voice_id
    assert vid not in [v.voice_id for v in (await theirs.voices.get_all()).voices]
    with pytest.raises(ApiError) as e:
        await collect(theirs.text_to_speech.convert(vid, text="hi"))
    assert e.value.status_code == 400
