"""Two gateway processes sharing one real Redis (specs/traffic.md §9): the global shadow budget and the
concurrency cap hold across both; ElevenLabs continuation ids go to the side that issued them whichever
replica serves the next request; with Redis down the shadow is skipped (counted), the primary unaffected.
The vendor is a third `gradium-gateway serve` (the stand-in, its own emulator) that accepts only vendor keys."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import redis
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.fleet.procs import Proc, clean_env, start, wait_ready
from tests.fleet.redis_server import RedisServer

GW, QA = "gw_acme_key", "gw_acme_qa_key"
VENDOR, SHADOW = "sk_vendor_el", "sk_shadow_el"
RACHEL = "21m00Tcm4TlvDq8ikWAM"
TEXT = "Hello there."  # 12 characters: two fit in the fleet's daily 30, a third does not


def sha(v: str) -> str:
    return hashlib.sha256(v.encode()).hexdigest()


def write(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path


def front_config(tmp: Path, name: str, vendor_url: str) -> Path:
    return write(tmp / f"{name}.yaml", {
        "auth": {"mode": "managed",
                 "keys": [{"sha256": sha(GW), "tenant": "acme"},
                          {"sha256": sha(QA), "tenant": "acme", "allow_overrides": True}],
                 "tenants": {"acme": {"gradium_api_key": "gsk_acme", "legacy_keys": {"elevenlabs": VENDOR},
                                      "shadow_keys": {"elevenlabs": SHADOW, "gradium": "gsk_acme_shadow"}}}},
        "legacy": {"elevenlabs": {"base_url": vendor_url}},
        "shadow": {"enabled": True, "store": {"path": str(tmp / f"{name}.db")},
                   "rules": [{"match": {"tenant": "acme", "provider": "elevenlabs"}, "rate": 1,
                              "budget": {"max_concurrent": 4}}],
                   "global_budget": {"tts_chars_per_day": 30, "max_concurrent": 1}},
    })


def sample(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


async def legs(http: aiohttp.ClientSession, gw: Proc, outcome: str) -> float:
    async with http.get(f"{gw.url}/metrics") as r:
        return sample(await r.text(), "gateway_shadow_legs_total", outcome=outcome, shadow_target="legacy")


async def until(check: Any, what: str, timeout: float = 30) -> None:
    for _ in range(int(timeout / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def speak(http: aiohttp.ClientSession, gw: Proc, key: str = GW, **body: Any) -> aiohttp.ClientResponse:
    async with http.post(f"{gw.url}/v1/text-to-speech/{RACHEL}?output_format=pcm_16000",
                         json={"text": TEXT, **body}, headers={"xi-api-key": key, **body.pop("headers", {})}) as r:
        assert r.status == 200 and len(await r.read()) > 1000, await r.text()
        return r


async def test_shadow_budget_caps_and_stitching_are_shared_across_replicas(redis_server: RedisServer,
                                                                           tmp_path: Path) -> None:
    env = clean_env(GATEWAY_REDIS_URL=redis_server.url, GATEWAY_TOKEN_SECRET="s" * 40)
    vendor_env = clean_env()
    vendor_cfg = write(tmp_path / "vendor.yaml", {"auth": {
        "mode": "managed", "keys": [{"sha256": sha(k), "tenant": "v"} for k in (VENDOR, SHADOW)],
        "tenants": {"v": {"gradium_api_key": "gsk_vendor"}}}})
    vendor = start(["serve", "--workers", "1", "--config", str(vendor_cfg)], vendor_env, tmp_path / "vendor.log")
    procs = [vendor]
    try:
        await wait_ready(vendor)
        a = start(["serve", "--workers", "1", "--config", str(front_config(tmp_path, "a", vendor.url))], env,
                  tmp_path / "a.log")
        b = start(["serve", "--workers", "1", "--config", str(front_config(tmp_path, "b", vendor.url))], env,
                  tmp_path / "b.log")
        procs += [a, b]
        await wait_ready(a)
        await wait_ready(b)
        r = redis.Redis(port=redis_server.port, decode_responses=True)
        day = datetime.now(UTC).strftime("%Y%m%d")
        async with aiohttp.ClientSession() as http:
            # the fleet's daily 30 characters: one shadow on A, one on B, then none on A
            for gw, n in ((a, 1), (b, 1)):
                await speak(http, gw)
                await until(lambda gw=gw, n=n: _eq(legs(http, gw, "completed"), n), "a completed shadow")
            await speak(http, a)
            await until(lambda: _eq(legs(http, a, "dropped_budget"), 1), "the budget refusal on A")
            assert float(r.get(f"gw:bud:*:legacy:tts_chars:{day}")) == 24  # unused reservations given back
            assert float(r.get(f"gw:bud:acme:legacy:tts_chars:{day}")) == 24
            assert 0 < r.ttl(f"gw:bud:*:legacy:tts_chars:{day}") <= 2 * 86400

            # one running shadow leg fleet-wide (global max_concurrent 1): A's socket holds it, B's is refused
            url = f"/v1/text-to-speech/{RACHEL}/stream-input?output_format=pcm_16000"
            async with http.ws_connect(a.url.replace("http", "ws") + url, headers={"xi-api-key": GW}) as ws_a:
                await ws_a.send_json({"text": " "})
                await until(lambda: _true(r.zcard("gw:conc:*:legacy") == 1), "A's leg in Redis")
                async with http.ws_connect(b.url.replace("http", "ws") + url, headers={"xi-api-key": GW}) as ws_b:
                    await ws_b.send_json({"text": " "})
                    await until(lambda: _eq(legs(http, b, "dropped_concurrency"), 1), "B refused")
                    await ws_b.send_json({"text": ""})
                await ws_a.send_json({"text": ""})
            await until(lambda: _true(r.zcard("gw:conc:*:legacy") == 0), "A's leg released")

            # a continuation id issued by the vendor through A goes to the vendor when it reaches B
            first = await speak(http, a, QA, headers={"X-Gateway-Target": "legacy"})
            assert first.headers["x-gateway-target"] == "legacy"
            rid = first.headers["request-id"]
            await until(lambda: _true(r.exists(f"gw:stitch:legacy:{rid}")), "the id shared")
            nxt = await speak(http, b, previous_request_ids=[rid])
            assert nxt.headers["x-gateway-target"] == "legacy"  # B's own split says gradium (100 %)
            plain = await speak(http, b)
            assert plain.headers["x-gateway-target"] == "gradium"
            await until(lambda: _true(r.exists(f"gw:stitch:gradium:{plain.headers['request-id']}")), "gradium id")

            # Redis down: no new shadow legs (counted), the client is served as before
            redis_server.stop()
            await speak(http, a)
            await until(lambda: _eq(legs(http, a, "state_unavailable"), 1), "the skipped shadow")
    finally:
        codes = [p.stop() for p in procs]
    assert codes == [0] * len(procs), "\n".join(p.output()[-2000:] for p in procs)


async def _eq(value: Any, n: float) -> bool:
    return await value == n


async def _true(value: bool) -> bool:
    return value
