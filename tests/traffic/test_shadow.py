"""Shadow legs against the stand-in vendor and the gateway's own Gradium side (specs/traffic.md §4)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from gateway.dialects.common import METRICS
from gateway.traffic.router import TRAFFIC
from tests.audiocheck import speech
from tests.conftest import Gateway
from tests.standin import StandIn
from tests.traffic.conftest import GW_KEY, SHADOW_KEYS, Front, managed_auth

RACHEL = "21m00Tcm4TlvDq8ikWAM"
TEXT = "hello world. how are you today?"


def shadow_cfg(**rule: Any) -> dict[str, Any]:
    return {"enabled": True, "rules": [{"match": {"tenant": "acme"}, "rate": 1, **rule}]}


def auth_with_shadow_keys() -> dict[str, Any]:
    return managed_auth(shadow_keys=dict(SHADOW_KEYS))


async def finished(gw: Gateway, n: int = 1) -> list[dict[str, Any]]:
    shadow = gw.front[TRAFFIC].shadow  # type: ignore[attr-defined]
    for _ in range(500):
        if len(shadow.finished) >= n and not shadow.legs:
            return shadow.finished
        await asyncio.sleep(0.02)
    raise AssertionError(f"shadow legs did not finish: {shadow.finished}")


async def live(gw: Gateway, query: str = "", headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    audio = speech(TEXT, 16000)
    async with aiohttp.ClientSession() as s, s.ws_connect(
            f"{gw.ws}/v1/listen?encoding=linear16&sample_rate=16000{query}",
            headers={"Authorization": f"Token {GW_KEY}", **(headers or {})}) as ws:
        assert "x-gateway-pair-id" not in ws._response.headers
        for i in range(0, len(audio), 3200):
            await ws.send_bytes(audio[i : i + 3200])
        await ws.send_str('{"type":"CloseStream"}')
        return [orjson.loads(m.data) async for m in ws if m.type == aiohttp.WSMsgType.TEXT]


async def speak(gw: Gateway, text: str = "Hello there. ", query: str = "") -> None:
    """One ElevenLabs stream-input socket (PCM 16 kHz) speaking `text`, read to its end."""
    async with aiohttp.ClientSession() as s, s.ws_connect(
            f"{gw.ws}/v1/text-to-speech/{RACHEL}/stream-input?output_format=pcm_16000{query}",
            headers={"xi-api-key": GW_KEY}) as ws:
        for m in ({"text": " "}, {"text": text}, {"text": ""}):
            await ws.send_str(orjson.dumps(m).decode())
        _ = [m async for m in ws]


def final_text(msgs: list[dict[str, Any]]) -> list[str]:
    return [m["channel"]["alternatives"][0]["transcript"] for m in msgs
            if m.get("type") == "Results" and m.get("is_final") and m["channel"]["alternatives"][0]["transcript"]]


def shadow_finals(texts: list[str]) -> list[str]:
    return final_text([orjson.loads(t) for t in texts])


@pytest.fixture
async def gradium_primary(standin: StandIn, front: Front, tmp_path: Any) -> AsyncIterator[Gateway]:
    cfg = {**shadow_cfg(), "store": {"path": str(tmp_path / "shadow.db")}}
    async with front(auth=auth_with_shadow_keys(), traffic={"default": {"gradium": 100}}, shadow=cfg) as gw:
        gw.db = tmp_path / "shadow.db"  # type: ignore[attr-defined]
        yield gw


def stored_rows(gw: Gateway) -> list[dict[str, Any]]:
    """The comparison store's rows, once the recorder and the store wrote what they had."""
    import sqlite3

    from gateway.traffic.admin import SHADOW_RECORDER

    assert gw.front[SHADOW_RECORDER].flush(10)  # type: ignore[attr-defined]
    for sink in gw.front[SHADOW_RECORDER].sinks:  # type: ignore[attr-defined]
        if hasattr(sink, "flush"):
            sink.flush(10)
    with sqlite3.connect(gw.db) as db:  # type: ignore[attr-defined]
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM shadow_pairs")]


async def test_gradium_primary_with_a_legacy_shadow_one_pair_per_unit(standin: StandIn,
                                                                     gradium_primary: Gateway) -> None:
    gw = gradium_primary
    collected: list[Any] = []
    gw.front[TRAFFIC].shadow.on_pair.append(lambda row, leg: collected.append(leg))  # type: ignore[attr-defined]
    msgs = await live(gw, "&tag=customer-tag&callback=https://customer.example/hook&extra=conversation_id:c1")
    [row] = await finished(gw)
    assert row["outcome"] == "completed" and row["primary"] == "gradium" and row["shadow_target"] == "legacy"
    # the same words on both legs: WER 0 on the emulator's tones
    assert final_text(msgs) and shadow_finals(collected[0].stats.texts) == final_text(msgs)
    assert row["primary_leg"]["first_output_ms"] is not None and row["shadow_leg"]["first_output_ms"] is not None
    seen = standin.last("/v1/listen")
    assert seen.header("Authorization") == f"Token {SHADOW_KEYS['deepgram']}"  # the shadow key, not production
    assert seen.header("X-Gateway-Pair-Id") == row["pair_id"]
    assert "callback" not in seen.query and "tag=gradium-gateway-shadow" in seen.query and "customer-tag" not in \
        seen.query
    # one pair row per unit in the comparison store, WER 0 on the emulator's tones
    [stored] = await asyncio.to_thread(stored_rows, gw)
    assert stored["pair_id"] == row["pair_id"] and stored["outcome"] == "completed"
    assert stored["wer"] == 0 and stored["ref_words"] == len(TEXT.split())
    assert stored["first_final_ms_p"] > 0 and stored["first_final_ms_s"] > 0
    reg = gw.front[METRICS].registry  # type: ignore[attr-defined]
    assert reg.get_sample_value("gateway_shadow_legs_total", {
        "provider": "deepgram", "route": "listen_live", "shadow_target": "legacy", "pair_kind": "candidate",
        "outcome": "completed"}) == 1
    # the client's own request metrics count one unit, on its own side
    assert reg.get_sample_value("gateway_requests_total", {
        "provider": "deepgram", "route": "listen_live", "status": "ok", "target": "gradium"}) == 1


async def test_legacy_primary_with_a_gradium_shadow(standin: StandIn, front: Front, tmp_path: Any) -> None:
    async with front(auth=auth_with_shadow_keys(), shadow=shadow_cfg()) as gw:
        gw.db = tmp_path / "shadow.db"  # type: ignore[attr-defined]  # where `front` puts the store
        collected: list[Any] = []
        gw.front[TRAFFIC].shadow.on_pair.append(lambda row, leg: collected.append(leg))  # type: ignore[attr-defined]
        msgs = await live(gw)
        [row] = await finished(gw)
        [stored] = await asyncio.to_thread(stored_rows, gw)
    assert row["outcome"] == "completed" and row["primary"] == "legacy" and row["shadow_target"] == "gradium"
    assert shadow_finals(collected[0].stats.texts) == final_text(msgs) != []
    assert len([s for s in standin.seen if "/v1/listen" in s.path]) == 1  # the vendor saw only the primary
    # each leg records its upstream request id: the vendor's `dg-request-id` of the passthrough, Gradium's
    legs = orjson.loads(stored["metrics"])["legs"]
    assert legs["p"]["upstream_request_id"] and legs["s"]["upstream_request_id"].startswith("req_")
    assert stored["shadow_request_id"] == legs["s"]["upstream_request_id"] and stored["wer"] == 0


async def test_tts_socket_shadow_both_legs_make_audio(standin: StandIn, front: Front) -> None:
    async with front(auth=auth_with_shadow_keys(), shadow=shadow_cfg()) as gw:
        collected: list[Any] = []
        gw.front[TRAFFIC].shadow.on_pair.append(lambda row, leg: collected.append(leg))  # type: ignore[attr-defined]
        async with aiohttp.ClientSession() as s, s.ws_connect(
                f"{gw.ws}/v1/text-to-speech/{RACHEL}/stream-input?output_format=pcm_16000",
                headers={"xi-api-key": GW_KEY}) as ws:
            for m in ({"text": " "}, {"text": "Hello there. "}, {"text": ""}):
                await ws.send_str(orjson.dumps(m).decode())
            out = [orjson.loads(m.data) async for m in ws]
        [row] = await finished(gw)
    assert row["outcome"] == "completed" and out[-1]["isFinal"] is True
    leg = collected[0]
    assert leg.stats.frames_out > 1 and leg.stats.bytes_out > 10_000  # audio frames (base64 in JSON)


async def test_privacy_flag_skips_the_shadow(standin: StandIn, front: Front) -> None:
    async with front(auth=auth_with_shadow_keys(), shadow=shadow_cfg()) as gw:
        await speak(gw, "Hi. ", "&enable_logging=false")
        reg = gw.front[METRICS].registry  # type: ignore[attr-defined]
        assert reg.get_sample_value("gateway_shadow_legs_total", {
            "provider": "elevenlabs", "route": "tts_stream_input", "shadow_target": "gradium",
            "pair_kind": "candidate", "outcome": "skipped_privacy"}) == 1
        assert not gw.front[TRAFFIC].shadow.finished  # type: ignore[attr-defined]


async def test_budget_exhaustion_truncates_the_shadow(standin: StandIn, front: Front) -> None:
    cfg = shadow_cfg(budget={"tts_chars_per_day": 4, "max_concurrent": 2})
    async with front(auth=auth_with_shadow_keys(), shadow=cfg) as gw:
        collected: list[Any] = []
        gw.front[TRAFFIC].shadow.on_pair.append(lambda row, leg: collected.append(leg))  # type: ignore[attr-defined]
        async with aiohttp.ClientSession() as s, s.ws_connect(
                f"{gw.ws}/v1/text-to-speech/{RACHEL}/stream-input?output_format=pcm_16000",
                headers={"xi-api-key": GW_KEY}) as ws:
            for m in ({"text": " "}, {"text": "Hello there, a longer text. "}, {"text": ""}):
                await ws.send_str(orjson.dumps(m).decode())
            out = [orjson.loads(m.data) async for m in ws]
        [row] = await finished(gw)
    assert row["outcome"] == "truncated_budget" and out[-1]["isFinal"] is True  # the client is unaffected
    # ended the dialect's way (the mapping's `end_of_input`), not cut: the shadow finished its socket itself
    assert collected[0].stats.close_code == 1000


async def test_stalled_shadow_is_dropped_and_the_client_gets_every_frame(standin: StandIn, front: Front,
                                                                        tls_files: dict) -> None:
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)  # accepts, never answers the handshake

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    legacy = {"deepgram": {"base_url": f"http://127.0.0.1:{port}", "connect_timeout_s": 30}}
    try:
        async with front(auth=auth_with_shadow_keys(), traffic={"default": {"gradium": 100}}, legacy=legacy,
                         shadow=shadow_cfg(queue={"max_frames": 8, "max_bytes": 1_000_000})) as gw:
            msgs = await live(gw)
            [row] = await finished(gw)
            direct = await live(gw)  # the same unit again (its shadow is dropped too): same answer
    finally:
        server.close()
    assert row["outcome"] == "dropped_overflow"
    assert final_text(msgs) == final_text(direct) and final_text(msgs)
    assert msgs[-1]["type"] == "Metadata"


async def test_rate_zero_by_default(standin: StandIn, front: Front) -> None:
    async with front(auth=auth_with_shadow_keys(), shadow={"enabled": True}) as gw:
        await live(gw)
        assert not gw.front[TRAFFIC].shadow.finished  # type: ignore[attr-defined]


async def test_rest_tts_shadow_to_the_vendor(standin: StandIn, gradium_primary: Gateway) -> None:
    gw = gradium_primary
    body = orjson.dumps({"text": "Hello there. How are you?", "model_id": "eleven_flash_v2_5"})
    async with aiohttp.ClientSession() as s, s.post(
            f"{gw.http}/v1/text-to-speech/{RACHEL}/stream?output_format=pcm_16000", data=body,
            headers={"xi-api-key": GW_KEY, "Content-Type": "application/json"}) as r:
        audio = await r.read()
        assert r.status == 200 and r.headers["x-gateway-target"] == "gradium" and audio
        assert "x-gateway-pair-id" not in r.headers
        primary_rid = r.headers["request-id"]
    [row] = await finished(gw)
    assert row["outcome"] == "completed" and row["shadow_leg"]["bytes_out"] > 0
    assert row["shadow_leg"]["close_code"] == 200  # the vendor's status, kept on the leg only
    seen = standin.last("/text-to-speech/")
    assert seen.header("xi-api-key") == SHADOW_KEYS["elevenlabs"] and seen.header("X-Gateway-Pair-Id") == row["pair_id"]
    assert seen.body_len == len(body) and seen.query == "output_format=pcm_16000"
    assert row["primary_request_id"] and primary_rid  # the client saw its own request id, not the vendor's
    # both bodies measured: the request's own format (from its query and JSON body), TTFA from each leg's send
    [stored] = await asyncio.to_thread(stored_rows, gw)
    assert stored["transport"] == "rest" and stored["flags"] == "[]" and stored["format_match"] == 1
    assert stored["duration_ratio"] == 1.0 and stored["ttfa_ms_p"] > 0 and stored["ttfa_ms_s"] > 0
    assert stored["cost_tts_chars"] == len("Hello there. How are you?")
    legs = orjson.loads(stored["metrics"])["legs"]
    assert legs["s"]["status"] == 200 and legs["s"]["upstream_request_id"] == stored["shadow_request_id"]


def test_conversation_sampling_is_sticky_and_near_the_rate() -> None:
    from gateway.traffic.policy import Unit
    from gateway.traffic.settings import ShadowRule, ShadowSettings
    from gateway.traffic.shadow import Shadow

    shadow = Shadow.__new__(Shadow)
    shadow.rng = __import__("random").Random(1)
    rule = ShadowRule(rate=0.2, sample_by="conversation")
    units = [Unit("deepgram", "listen_live", "stt", "ws", "acme", keys={"header": f"c{i}"}) for i in range(5000)]
    first = [shadow.sampled(rule, u, False) for u in units]
    assert first == [shadow.sampled(rule, u, False) for u in units]  # the same conversations every time
    assert abs(sum(first) / len(first) - 0.2) < 0.02
    assert shadow.sampled(ShadowRule(rate=0), units[0], True)  # X-Gateway-Shadow from a QA key
    assert ShadowSettings().rules == [] and ShadowRule().rate == 0  # nothing shadowed by default


async def _legs_left_to_the_collector(gw: Gateway, unit: Any) -> list[Any]:
    """The legs of `unit` (a coroutine function of the gateway) still alive once their pairs were taken,
    with the garbage collector off: those that only a collection would free (a reference cycle)."""
    legs: list[weakref.ref[Any]] = []
    gw.front[TRAFFIC].shadow.on_pair.append(lambda row, leg: legs.append(weakref.ref(leg)))  # type: ignore[attr-defined]
    gc.collect()
    gc.disable()
    try:
        await unit(gw)
        [row] = await finished(gw)
        [stored] = await asyncio.to_thread(stored_rows, gw)  # the recorder took and compared the pair
        assert row["outcome"] == stored["outcome"] == "completed" and legs
        return [r() for r in legs if r() is not None]
    finally:
        gc.enable()


async def test_a_finished_shadow_leg_is_freed_without_the_garbage_collector(standin: StandIn, front: Front,
                                                                           tmp_path: Any) -> None:
    """A shadowed unit's leg, with every frame it kept, goes when its pair is taken: by reference counting.
    Left to the collector (a reference cycle), each unit fed the young generation, whose collections then
    walked thousands of kept frames: pauses of ~4 ms inside other sessions' time to first audio."""
    cfg = {**shadow_cfg(), "store": {"path": str(tmp_path / "tts.db")}}
    # a TTS socket traced on the primary (Gradium) with a vendor-socket shadow leg
    async with front(auth=auth_with_shadow_keys(), traffic={"default": {"gradium": 100}}, shadow=cfg) as gw:
        gw.db = tmp_path / "tts.db"  # type: ignore[attr-defined]
        assert await _legs_left_to_the_collector(gw, speak) == []
    # live STT with the primary at the vendor and a headless Gradium session as the shadow, traced too
    async with front(auth=auth_with_shadow_keys(), shadow=shadow_cfg()) as gw:
        gw.db = tmp_path / "shadow.db"  # type: ignore[attr-defined]  # where `front` puts the store
        assert await _legs_left_to_the_collector(gw, live) == []
