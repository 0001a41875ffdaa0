"""The official `elevenlabs` SDK manages pronunciation dictionaries through the gateway (base URL changed
only), and TTS over REST and WebSocket speaks their rewrites (read back through the emulator's STT)."""

from __future__ import annotations

import io
from typing import Any

import aiohttp
import orjson
import pytest
from elevenlabs.client import AsyncElevenLabs
from elevenlabs.core.api_error import ApiError
from elevenlabs.pronunciation_dictionaries import (
    BodyAddAPronunciationDictionaryV1PronunciationDictionariesAddFromRulesPostRulesItem_Alias as Alias,
)
from elevenlabs.pronunciation_dictionaries import (
    BodyAddAPronunciationDictionaryV1PronunciationDictionariesAddFromRulesPostRulesItem_Phoneme as Phoneme,
)
from elevenlabs.pronunciation_dictionaries.rules.types import PronunciationDictionaryRule_Alias
from elevenlabs.types import PronunciationDictionaryVersionLocator

from gateway.emulator.stats import STATS
from tests.audiocheck import decode, words
from tests.conftest import Gateway

KEY = "gsk_test"
RACHEL = "21m00Tcm4TlvDq8ikWAM"
PLS = b"""<?xml version="1.0" encoding="UTF-8"?>
<lexicon version="1.0" xmlns="http://www.w3.org/2005/01/pronunciation-lexicon" alphabet="ipa" xml:lang="en-US">
  <lexeme><grapheme>SQL</grapheme><alias>sequel</alias></lexeme>
  <lexeme><grapheme>GW</grapheme><grapheme>gw</grapheme><alias>gateway</alias></lexeme>
</lexicon>"""


def client(gw: Gateway) -> AsyncElevenLabs:
    return AsyncElevenLabs(api_key=KEY, base_url=gw.http)


async def collect(stream: Any) -> bytes:
    return b"".join([chunk async for chunk in stream])


async def test_dictionaries_rules_and_tts(gateway: Gateway) -> None:
    el = client(gateway)
    made = await el.pronunciation_dictionaries.create_from_rules(
        name="brand", description="product names",
        rules=[Alias(string_to_replace="Gradium", alias="grey dee um"), Alias(string_to_replace="ASR", alias="a s r")])
    assert made.version_rules_num == 2 and made.version_id and len(made.id) == 20
    from_file = await el.pronunciation_dictionaries.create_from_file(name="lexicon", file=("l.pls", io.BytesIO(PLS)))
    assert from_file.version_rules_num == 3

    got = await el.pronunciation_dictionaries.get(made.id)
    assert got.name == "brand" and got.latest_version_id == made.version_id
    assert [(r.string_to_replace, r.alias) for r in got.rules] == [("Gradium", "grey dee um"), ("ASR", "a s r")]
    listed = await el.pronunciation_dictionaries.list()
    assert {d.id for d in listed.pronunciation_dictionaries} == {made.id, from_file.id} and not listed.has_more
    page = await el.pronunciation_dictionaries.list(page_size=1)
    assert page.has_more and (await el.pronunciation_dictionaries.list(cursor=page.next_cursor)).has_more is False

    added = await el.pronunciation_dictionaries.rules.add(
        made.id, rules=[PronunciationDictionaryRule_Alias(string_to_replace="TTS", alias="text to speech")])
    assert added.version_rules_num == 3 and added.version_id != made.version_id
    removed = await el.pronunciation_dictionaries.rules.remove(made.id, rule_strings=["ASR"])
    assert removed.version_rules_num == 2
    pls = b"".join([c async for c in el.pronunciation_dictionaries.download(made.id, removed.version_id)])
    assert b"<grapheme>TTS</grapheme><alias>text to speech</alias>" in pls

    # REST TTS with the dictionary: the rewrite is what is spoken
    locator = [PronunciationDictionaryVersionLocator(pronunciation_dictionary_id=made.id,
                                                    version_id=removed.version_id)]
    audio = await collect(el.text_to_speech.convert(
        RACHEL, text="Gradium does TTS and ASR.", output_format="pcm_24000",
        pronunciation_dictionary_locators=locator))
    assert " ".join(words(decode(audio, "s16le", 24000).pcm, 24000)) == "grey dee um does text to speech and asr."
    assert gateway.emulator.app[STATS].setups[-1]["setup"]["pronunciation_id"] != made.id  # the Gradium uid

    # WebSocket TTS: the locators come in the first message
    async with aiohttp.ClientSession() as http, http.ws_connect(
            f"{gateway.ws}/v1/text-to-speech/{RACHEL}/stream-input?output_format=pcm_24000",
            headers={"xi-api-key": KEY}) as ws:
        await ws.send_json({"text": " ", "pronunciation_dictionary_locators": [
            {"pronunciation_dictionary_id": from_file.id, "version_id": from_file.version_id}]})
        await ws.send_json({"text": "SQL via GW"})
        await ws.send_json({"text": ""})
        pcm = b""
        async for msg in ws:
            data = orjson.loads(msg.data)
            if data.get("audio"):
                import base64

                pcm += base64.b64decode(data["audio"])
    assert " ".join(words(decode(pcm, "s16le", 24000).pcm, 24000)) == "sequel via gateway"

    await el.pronunciation_dictionaries.update(from_file.id, archived=True)
    with pytest.raises(ApiError) as e:
        await el.pronunciation_dictionaries.get(from_file.id)
    assert e.value.status_code == 404


async def test_dictionary_errors(gateway: Gateway) -> None:
    el = client(gateway)
    with pytest.raises(ApiError) as e:
        await el.pronunciation_dictionaries.create_from_rules(
            name="ipa", rules=[Phoneme(string_to_replace="x", phoneme="ɛks", alphabet="ipa")])
    assert e.value.status_code == 422 and "phoneme" in e.value.body["detail"]["message"]
    with pytest.raises(ApiError) as e:
        await el.pronunciation_dictionaries.create_from_file(name="bad", file=("l.pls", io.BytesIO(b"<nope")))
    assert e.value.status_code == 422
    with pytest.raises(ApiError) as e:
        await el.pronunciation_dictionaries.create_from_file(name="nofile")
    assert e.value.status_code == 422
    await el.pronunciation_dictionaries.create_from_rules(name="dup", rules=[Alias(string_to_replace="a", alias="b")])
    with pytest.raises(ApiError) as e:
        await el.pronunciation_dictionaries.create_from_rules(name="DUP", rules=[])
    assert e.value.status_code == 400 and e.value.body["detail"]["status"] == "already_exists"
    with pytest.raises(ApiError) as e:
        await el.pronunciation_dictionaries.get("A" * 20)
    assert e.value.status_code == 404
    with pytest.raises(ApiError) as e:
        await collect(el.text_to_speech.convert(RACHEL, text="x", pronunciation_dictionary_locators=[
            PronunciationDictionaryVersionLocator(pronunciation_dictionary_id="A" * 20)]))
    assert e.value.status_code == 404
