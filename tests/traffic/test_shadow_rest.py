"""REST shadow legs in both directions and for uploads (specs/traffic.md §4.2): raw audio bodies and
multipart forms are copied while the primary streams them (at most `shadow.max_body_bytes`), then sent to
the other side: the stand-in vendor, or the gateway's own Gradium handlers on loopback."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from gateway.dialects.common import METRICS
from gateway.traffic.bridge import pair_from_shadow_leg
from gateway.traffic.compare import compare_pair
from gateway.traffic.router import TRAFFIC
from tests.audiocheck import speech
from tests.conftest import Gateway
from tests.emulator.helpers import wav_bytes
from tests.standin import StandIn
from tests.traffic.conftest import GW_KEY, SHADOW_KEYS, VENDOR_KEYS, Front, managed_auth

RACHEL = "21m00Tcm4TlvDq8ikWAM"
DG = {"Authorization": f"Token {GW_KEY}"}


def shadow_cfg(**extra: Any) -> dict[str, Any]:
    return {"enabled": True, "store": {"kind": "none"}, "rules": [{"match": {"tenant": "acme"}, "rate": 1}], **extra}


def auth() -> dict[str, Any]:
    return managed_auth(shadow_keys=dict(SHADOW_KEYS))


async def pairs(gw: Gateway, n: int = 1) -> list[tuple[dict[str, Any], Any]]:
    got: list[tuple[dict[str, Any], Any]] = gw.pairs  # type: ignore[attr-defined]
    for _ in range(1000):
        if len(got) >= n and not gw.front[TRAFFIC].shadow.legs:  # type: ignore[attr-defined]
            return got
        await asyncio.sleep(0.02)
    raise AssertionError(f"shadow legs did not finish: {got}")


def collecting(gw: Gateway) -> Gateway:
    gw.pairs = []  # type: ignore[attr-defined]
    gw.front[TRAFFIC].shadow.on_pair.append(lambda row, leg: gw.pairs.append((row, leg)))  # type: ignore
    return gw


def body_of(stats: Any) -> bytes:
    return b"".join(d if isinstance(d, bytes) else d.encode() for _, d in stats.outs)


def dg_transcript(raw: bytes) -> str:
    return str(orjson.loads(raw)["results"]["channels"][0]["alternatives"][0]["transcript"])


def legs_total(gw: Gateway, route: str, side: str, outcome: str, provider: str = "deepgram") -> float | None:
    reg = gw.front[METRICS].registry  # type: ignore[attr-defined]
    return reg.get_sample_value("gateway_shadow_legs_total", {
        "provider": provider, "route": route, "shadow_target": side, "pair_kind": "candidate", "outcome": outcome})


def compared(row: dict[str, Any], leg: Any) -> dict[str, Any]:
    """The stored row of a pair: both REST answers read as transcripts, compared."""
    return compare_pair(pair_from_shadow_leg(row, leg), store_text=True).row


async def chunked(data: bytes, size: int = 4000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_deepgram_upload_to_the_vendor_shadow_raw_body(standin: StandIn, front: Front) -> None:
    audio = speech("one two three", 16000)
    async with front(auth=auth(), traffic={"default": {"gradium": 100}}, shadow=shadow_cfg()) as gw:
        collecting(gw)
        async with aiohttp.ClientSession() as s, s.post(
                f"{gw.http}/v1/listen?encoding=linear16&sample_rate=16000&tag=mine", data=chunked(audio),
                headers={**DG, "Content-Type": "audio/l16"}) as r:  # chunked: no Content-Length
            primary = await r.read()
            assert r.status == 200 and r.headers["x-gateway-target"] == "gradium"
            assert "x-gateway-pair-id" not in r.headers and r.headers.get("dg-request-id") != "vendor"
        [(row, leg)] = await pairs(gw)
    assert row["outcome"] == "completed" and row["shadow_target"] == "legacy"
    assert dg_transcript(primary) == dg_transcript(body_of(leg.stats)) == "one two three"
    seen = standin.last("/v1/listen")
    assert seen.body_sha256 == hashlib.sha256(audio).hexdigest()  # the upload, byte for byte
    assert seen.header("Content-Type") == "audio/l16" and seen.header("Authorization") == \
        f"Token {SHADOW_KEYS['deepgram']}"
    assert "tag=gradium-gateway-shadow" in seen.query and "mine" not in seen.query
    assert leg.cost["stt_seconds"] == len(audio) / 32000  # linear16 at 16 kHz, from the query
    stored = compared(row, leg)
    assert stored["wer"] == 0 and stored["ref_words"] > 0 and stored["final_text_p"] == "one two three"
    assert stored["first_final_ms_p"] > 0 and stored["first_final_ms_s"] > 0


@pytest.mark.parametrize("primary_side", ["gradium", "legacy"])
async def test_elevenlabs_multipart_upload_shadowed(standin: StandIn, front: Front, primary_side: str) -> None:
    form = aiohttp.FormData()
    form.add_field("model_id", "scribe_v1")
    form.add_field("file", wav_bytes("hello world", 16000), filename="a.wav", content_type="audio/wav")
    weight = 100 if primary_side == "gradium" else 0
    async with front(auth=auth(), traffic={"default": {"gradium": weight}}, shadow=shadow_cfg()) as gw:
        collecting(gw)
        async with aiohttp.ClientSession() as s, s.post(f"{gw.http}/v1/speech-to-text", data=form,
                                                        headers={"xi-api-key": GW_KEY}) as r:
            primary = await r.json()
            assert r.status == 200 and r.headers["x-gateway-target"] == primary_side, primary
        [(row, leg)] = await pairs(gw)
    assert row["outcome"] == "completed" and row["route"] == "speech_to_text" and row["primary"] == primary_side
    shadow = orjson.loads(body_of(leg.stats))
    assert shadow["text"] == primary["text"] and "hello" in primary["text"].lower()
    stored = compared(row, leg)  # whichever side is primary, its JSON answer is its leg's final
    assert stored["wer"] == 0 and stored["ref_words"] == 2 and stored["final_text_p"] == primary["text"]
    [seen] = [x for x in standin.seen if x.path == "/v1/speech-to-text"]  # one leg reached the vendor
    assert seen.header("Content-Type").startswith("multipart/form-data; boundary=") and seen.body_len > 10_000
    assert seen.header("xi-api-key") == (SHADOW_KEYS if primary_side == "gradium" else VENDOR_KEYS)["elevenlabs"]


async def test_tts_rest_with_a_legacy_primary_and_a_gradium_shadow(standin: StandIn, front: Front) -> None:
    body = orjson.dumps({"text": "Hello there. How are you?", "model_id": "eleven_flash_v2_5"})
    async with front(auth=auth(), shadow=shadow_cfg()) as gw:  # default: every unit to the vendor
        collecting(gw)
        async with aiohttp.ClientSession() as s, s.post(
                f"{gw.http}/v1/text-to-speech/{RACHEL}/stream?output_format=pcm_16000", data=body,
                headers={"xi-api-key": GW_KEY, "Content-Type": "application/json"}) as r:
            audio = await r.read()
            assert r.status == 200 and r.headers["x-gateway-target"] == "legacy" and audio
        [(row, leg)] = await pairs(gw)
        loopback = gw.front[TRAFFIC].shadow.loopback.url  # type: ignore[attr-defined]
        async with aiohttp.ClientSession() as s, s.post(  # only the gateway itself may use its loopback
                f"{loopback}/elevenlabs/v1/text-to-speech/{RACHEL}", data=body,
                headers={"xi-api-key": "gsk_someone", "Content-Type": "application/json"}) as r:
            assert r.status == 403
        reg = gw.front[METRICS].registry  # type: ignore[attr-defined]
        gradium_units = reg.get_sample_value("gateway_requests_total", {
            "provider": "elevenlabs", "route": "tts_stream", "status": "200", "target": "gradium"})
    assert row["outcome"] == "completed" and row["primary"] == "legacy" and row["shadow_target"] == "gradium"
    assert leg.stats.close_code == 200 and 0.5 < len(body_of(leg.stats)) / len(audio) < 2  # audio from Gradium
    assert leg.cost["tts_chars"] == len("Hello there. How are you?")
    assert len([x for x in standin.seen if "/text-to-speech/" in x.path]) == 1  # the vendor saw the primary only
    assert not gradium_units  # the shadow is not a client's request


async def test_stt_upload_with_a_legacy_primary_and_a_gradium_shadow(standin: StandIn, front: Front) -> None:
    audio = speech("four five", 16000)
    async with front(auth=auth(), shadow=shadow_cfg()) as gw:
        collecting(gw)
        async with aiohttp.ClientSession() as s, s.post(
                f"{gw.http}/v1/listen?encoding=linear16&sample_rate=16000", data=audio,
                headers={**DG, "Content-Type": "audio/l16"}) as r:
            primary = await r.read()
            assert r.status == 200 and r.headers["x-gateway-target"] == "legacy"
        [(row, leg)] = await pairs(gw)
    assert row["outcome"] == "completed" and row["shadow_target"] == "gradium"
    assert dg_transcript(primary) == dg_transcript(body_of(leg.stats)) == "four five"


async def test_an_upload_over_max_body_bytes_drops_the_shadow_not_the_primary(standin: StandIn,
                                                                             front: Front) -> None:
    audio = speech("one two three", 16000)
    async with front(auth=auth(), traffic={"default": {"gradium": 100}},
                     shadow=shadow_cfg(max_body_bytes=len(audio) // 2)) as gw:
        collecting(gw)
        async with aiohttp.ClientSession() as s:
            for data in (chunked(audio), audio):  # copied past the bound, or refused by its Content-Length
                async with s.post(f"{gw.http}/v1/listen?encoding=linear16&sample_rate=16000", data=data,
                                  headers={**DG, "Content-Type": "audio/l16"}) as r:
                    assert r.status == 200 and dg_transcript(await r.read()) == "one two three"
        [(row, _)] = await pairs(gw)
        assert row["outcome"] == "dropped_overflow"
        assert legs_total(gw, "listen_prerecorded", "legacy", "dropped_overflow") == 2
    assert not [x for x in standin.seen if "/v1/listen" in x.path]


async def test_callback_requests_are_not_shadowed(standin: StandIn, front: Front) -> None:
    async with front(auth=auth(), traffic={"default": {"gradium": 100}}, shadow=shadow_cfg()) as gw:
        async with aiohttp.ClientSession() as s, s.post(
                f"{gw.http}/v1/listen?encoding=linear16&sample_rate=16000&callback=https://example.invalid/h",
                data=speech("one", 16000), headers={**DG, "Content-Type": "audio/l16"}) as r:
            assert r.status == 200
        assert legs_total(gw, "listen_prerecorded", "legacy", "skipped_unsupported") == 1
