"""A request naming the caller's own Gradium voice goes to Gradium whatever the split says: the legacy vendor
has never heard of the id this gateway sealed for it (gateway/traffic/own_ids.py)."""

from __future__ import annotations

import aiohttp

from gateway.dialects.common import METRICS
from tests.emulator.helpers import wav_bytes
from tests.standin import StandIn
from tests.traffic.conftest import GW_KEY, Front

RACHEL = "21m00Tcm4TlvDq8ikWAM"
PCM = "?output_format=pcm_16000"


async def _clone(s: aiohttp.ClientSession, base: str) -> str:
    form = aiohttp.FormData()
    form.add_field("name", "Mine")
    form.add_field("files", wav_bytes("my own voice", 24000), filename="me.wav", content_type="audio/wav")
    async with s.post(f"{base}/v1/voices/add", data=form, headers={"xi-api-key": GW_KEY}) as r:
        assert r.status == 200, await r.text()
        return (await r.json())["voice_id"]


async def _tts(s: aiohttp.ClientSession, base: str, voice: str) -> aiohttp.ClientResponse:
    r = await s.post(f"{base}/v1/text-to-speech/{voice}/stream{PCM}", json={"text": "Hello there"},
                     headers={"xi-api-key": GW_KEY})
    await r.read()
    return r


async def test_own_voice_is_served_by_gradium_at_weight_0_and_under_force(standin: StandIn, front: Front) -> None:
    for traffic in ({"default": {"gradium": 0}}, {"default": {"gradium": 100}, "force": "legacy"}):
        async with front(traffic=traffic) as gw, aiohttp.ClientSession() as s:
            mine = await _clone(s, gw.http)  # voice management stays on the gateway (Gradium) under a split
            before = len([x for x in standin.seen if "/text-to-speech/" in x.path])
            own = await _tts(s, gw.http, mine)
            assert own.status == 200 and own.headers["x-gateway-target"] == "gradium"
            catalogue = await _tts(s, gw.http, RACHEL)  # everything else follows the split (or the rollback)
            assert catalogue.status == 200 and catalogue.headers["x-gateway-target"] == "legacy"
            assert len([x for x in standin.seen if "/text-to-speech/" in x.path]) == before + 1
            # the socket route pins the same way, decided once at the upgrade
            url = f"{gw.http}/v1/text-to-speech/{mine}/stream-input{PCM}".replace("http", "ws", 1)
            async with s.ws_connect(url, headers={"xi-api-key": GW_KEY}) as ws:
                await ws.send_json({"text": " ", "xi_api_key": GW_KEY})
                await ws.send_json({"text": "Hello there. "})
                await ws.send_json({"text": ""})
                final = None
                async for msg in ws:
                    final = msg.json()
                    if final.get("isFinal"):
                        break
                assert final is not None and final.get("isFinal")
            reg = gw.front[METRICS].registry  # type: ignore[attr-defined]
            for route in ("tts_stream", "tts_stream_input"):
                assert reg.get_sample_value("gateway_traffic_assignments_total", {
                    "provider": "elevenlabs", "route": route, "target": "gradium", "reason": "own_object"}) == 1


async def test_another_tenants_sealed_id_is_not_pinned(standin: StandIn, front: Front) -> None:
    """An id sealed for someone else does not open for this caller: no pin, the split decides as usual."""
    async with front(traffic={"default": {"gradium": 0}}) as gw, aiohttp.ClientSession() as s:
        r = await _tts(s, gw.http, "AAAAAAAAAAAAAAAAAAAAAAAA"[:20])
        assert r.headers["x-gateway-target"] == "legacy"
