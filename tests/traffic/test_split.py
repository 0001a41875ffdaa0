"""The split in front of the routes: one decision per unit, visible on the answer (specs/traffic.md §3)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import orjson
import pytest
import yaml

from gateway.app import create_app
from gateway.config import load_settings
from gateway.dialects.common import METRICS
from gateway.traffic.policy import bucket
from gateway.yamlfile import ConfigFileError
from tests.standin import StandIn
from tests.traffic.conftest import GW_KEY, Front, managed_auth, sha

RACHEL = "21m00Tcm4TlvDq8ikWAM"


def session_for(target: str, weight: float, salt: str = "gradium-gateway") -> str:
    """A session header value whose bucket lands on `target` at `weight`."""
    for i in range(10_000):
        b = bucket(salt, "acme", f"s{i}")
        if (b < round(weight * 100)) == (target == "gradium"):
            return f"s{i}"
    raise AssertionError


async def tts(gw_http: str, s: aiohttp.ClientSession, **headers: str) -> aiohttp.ClientResponse:
    r = await s.post(f"{gw_http}/v1/text-to-speech/{RACHEL}/stream?output_format=pcm_16000",
                     json={"text": "Hello there"}, headers={"xi-api-key": GW_KEY, **headers})
    await r.read()
    return r


async def test_session_header_pins_the_side_and_the_answer_says_which(standin: StandIn, front: Front) -> None:
    async with front(traffic={"default": {"gradium": 50}}) as gw, aiohttp.ClientSession() as s:
        for target in ("gradium", "legacy"):
            sid = session_for(target, 50)
            for _ in range(3):
                r = await tts(gw.http, s, **{"X-Gateway-Session": sid})
                assert r.status == 200 and r.headers["x-gateway-target"] == target
        reg = gw.front[METRICS].registry  # type: ignore[attr-defined]
        for target in ("gradium", "legacy"):
            assert reg.get_sample_value("gateway_traffic_assignments_total", {
                "provider": "elevenlabs", "route": "tts_stream", "target": target, "reason": "header"}) == 3
            # the request metrics carry the side: the live A/B is visible in Prometheus
            assert reg.get_sample_value("gateway_requests_total", {
                "provider": "elevenlabs", "route": "tts_stream", "status": "200", "target": target}) == 3
    assert len([x for x in standin.seen if "/text-to-speech/" in x.path]) == 3


async def test_stitching_ids_go_back_to_the_side_that_issued_them(standin: StandIn, front: Front) -> None:
    async with front(traffic={"default": {"gradium": 50}}) as gw, aiohttp.ClientSession() as s:
        first = await tts(gw.http, s, **{"X-Gateway-Session": session_for("legacy", 50)})
        assert first.headers["x-gateway-target"] == "legacy"
        rid = first.headers["request-id"]
        r = await s.post(f"{gw.http}/v1/text-to-speech/{RACHEL}/stream",
                         json={"text": "and then", "previous_request_ids": [rid]},
                         headers={"xi-api-key": GW_KEY, "X-Gateway-Session": session_for("gradium", 50)})
        await r.read()
        assert r.status == 200 and r.headers["x-gateway-target"] == "legacy"
    # the body the split read is still forwarded whole
    assert standin.last("/text-to-speech/").body_len > 0


async def test_force_rolls_everything_back(standin: StandIn, front: Front) -> None:
    async with front(traffic={"default": {"gradium": 100}, "force": "legacy"}) as gw, aiohttp.ClientSession() as s:
        r = await tts(gw.http, s)
        assert r.headers["x-gateway-target"] == "legacy"


def test_force_from_the_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(yaml.safe_dump({"traffic": {"default": {"gradium": 100}}}))
    assert load_settings(cfg, env={"GATEWAY_TRAFFIC_FORCE": "legacy"}).traffic.force == "legacy"
    assert load_settings(cfg, env={}).traffic.force is None


async def test_qa_key_may_override_the_target(standin: StandIn, front: Front) -> None:
    auth = managed_auth()
    auth["keys"].append({"sha256": sha("qa_key"), "tenant": "acme", "allow_overrides": True})
    async with front(auth=auth, traffic={"default": {"gradium": 100}}) as gw, aiohttp.ClientSession() as s:
        r = await tts(gw.http, s, **{"X-Gateway-Target": "legacy"})
        assert r.headers["x-gateway-target"] == "gradium"  # an ordinary key: ignored
        r = await s.post(f"{gw.http}/v1/text-to-speech/{RACHEL}/stream", json={"text": "hi"},
                         headers={"xi-api-key": "qa_key", "X-Gateway-Target": "legacy"})
        await r.read()
        assert r.headers["x-gateway-target"] == "legacy"
    assert standin.last("/text-to-speech/").header("X-Gateway-Target") is None


async def test_stt_fails_over_to_gradium_when_the_vendor_is_unreachable(standin: StandIn, front: Front) -> None:
    traffic = {"rules": [{"match": {"provider": "deepgram"}, "weights": {"gradium": 50}}]}
    legacy = {"deepgram": {"base_url": "http://127.0.0.1:9", "connect_timeout_s": 2}}
    async with front(traffic=traffic, legacy=legacy) as gw, aiohttp.ClientSession() as s:
        sid = session_for("legacy", 50)
        async with s.ws_connect(f"{gw.ws}/v1/listen?encoding=linear16&sample_rate=16000",
                                headers={"Authorization": f"Token {GW_KEY}", "X-Gateway-Session": sid}) as ws:
            assert ws._response.headers["x-gateway-target"] == "gradium"
            await ws.send_str('{"type":"CloseStream"}')
            assert (await ws.receive_json())["type"] == "Metadata"
        reg = gw.front[METRICS].registry  # type: ignore[attr-defined]
        assert reg.get_sample_value("gateway_traffic_assignments_total", {
            "provider": "deepgram", "route": "listen_live", "target": "gradium", "reason": "failover"}) == 1


async def test_catalogue_stays_on_the_gateway_unless_served_legacy(standin: StandIn, front: Front) -> None:
    async with front() as gw, aiohttp.ClientSession() as s, s.get(
            f"{gw.http}/v1/voices", headers={"xi-api-key": GW_KEY}) as r:
        assert r.status == 200 and "x-gateway-target" not in r.headers
    assert not standin.seen
    traffic = {"default": {"gradium": 100}, "rules": [{"match": {"route": ["voices_list"]}, "serve": "legacy"}]}
    async with front(traffic=traffic) as gw, aiohttp.ClientSession() as s, s.get(
            f"{gw.http}/v1/voices", headers={"xi-api-key": GW_KEY}) as r:
        assert r.status == 200 and r.headers["x-gateway-target"] == "legacy"
    assert standin.last("/v1/voices").header("xi-api-key") == "sk_vendor_el"


async def test_tokens_minted_by_the_gateway_work_on_the_legacy_side(standin: StandIn, front: Front) -> None:
    async with front() as gw, aiohttp.ClientSession() as s:
        async with s.post(f"{gw.http}/v1/single-use-token/tts_websocket", headers={"xi-api-key": GW_KEY}) as r:
            token = (await r.json())["token"]
        url = f"{gw.ws}/v1/text-to-speech/{RACHEL}/stream-input?single_use_token={token}&output_format=pcm_16000"
        async with s.ws_connect(url) as ws:
            await ws.send_str('{"text": " "}')
            await ws.send_str('{"text": "Hi there. "}')
            await ws.send_str('{"text": ""}')
            out = [m async for m in ws]
            assert out and ws.close_code == 1000
    seen = standin.last("/stream-input")
    assert seen.header("xi-api-key") == "sk_vendor_el" and "single_use_token" not in seen.query


def _write(tmp_path: Path, doc: dict) -> Path:
    p = tmp_path / "gateway.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


def test_legacy_weight_without_a_legacy_key_names_file_and_line(tmp_path: Path) -> None:
    doc = {"auth": {"mode": "managed", "keys": [{"sha256": sha("k"), "tenant": "acme"}],
                    "tenants": {"acme": {"legacy_keys": {"deepgram": "dg"}}}},
           "traffic": {"rules": [{"match": {"tenant": "acme", "provider": "deepgram"}, "weights": {"gradium": 50}},
                                 {"match": {"tenant": "acme", "provider": "elevenlabs"},
                                  "weights": {"gradium": 95}}]}}
    path = _write(tmp_path, doc)
    with pytest.raises(ConfigFileError) as e:
        create_app(load_settings(path, env={}))
    [problem] = e.value.problems
    where, line, field, _ = problem.split(":", 3)
    assert where == str(path) and field.strip() == "traffic.rules.1.weights"
    lines = path.read_text().splitlines()
    assert "weights" in lines[int(line) - 1] and "gradium: 95" in lines[int(line)]  # the second rule's weights
    assert "legacy_keys.elevenlabs" in problem


@pytest.mark.parametrize(("section", "message"), [
    ({"traffic": {"rules": [{"match": {"route": "no_such_route"}, "weights": {"gradium": 100}}]}}, "unknown route"),
    ({"shadow": {"enabled": True, "rules": [{"match": {"tenant": "acme"}, "rate": 0.1}]}}, "shadow_keys.elevenlabs"),
    ({"traffic": {"rules": [{"weights": {"gradium": 5}, "ramp": [{"at": "2026-07-15T09:00Z", "gradium": 20},
                                                                 {"at": "2026-07-08T09:00Z", "gradium": 50}]}]}},
     "strictly increase"),
])
def test_other_load_time_checks(tmp_path: Path, section: dict, message: str) -> None:
    doc = {"auth": {"mode": "managed", "keys": [{"sha256": sha("k"), "tenant": "acme"}],
                    "tenants": {"acme": {"legacy_keys": {"deepgram": "dg"}}}}, **section}
    with pytest.raises(ConfigFileError) as e:
        create_app(load_settings(_write(tmp_path, doc), env={}))
    assert message in str(e.value) and str(tmp_path) in str(e.value)


def test_a_legacy_base_url_with_user_and_password_is_refused_at_load(tmp_path: Path) -> None:
    """The REST relay sends no userinfo (aiohttp's client made it Basic auth): a clear load error naming the
    field, not a 500 per request, and never the password in the message."""
    doc = {"legacy": {"elevenlabs": {"base_url": "https://user:s3cret@vendor.example/v1",
                                     "ws_base_url": "wss://user:s3cret@vendor.example/v1"}}}
    path = _write(tmp_path, doc)
    with pytest.raises(ConfigFileError) as e:
        load_settings(path, env={})
    [problem] = e.value.problems  # `ws_base_url` keeps aiohttp (sockets): it still may carry them
    where, line, field, message = problem.split(":", 3)
    assert where == str(path) and field.strip() == "legacy.elevenlabs.base_url" and "user:password@" in message
    assert "base_url" in path.read_text().splitlines()[int(line) - 1] and "s3cret" not in problem
    doc["legacy"]["elevenlabs"]["base_url"] = "https://vendor.example/v1?next=a@b"  # an @ outside the authority
    assert load_settings(_write(tmp_path, doc), env={}).legacy["elevenlabs"].base_url.endswith("a@b")


@pytest.mark.parametrize("target", ["legacy", "gradium"])
async def test_first_message_key_decides_with_its_tenant(standin: StandIn, front: Front, target: str) -> None:
    """ElevenLabs clients may send the key only in the first message: the tenant's rule still applies."""
    weight = 0 if target == "legacy" else 100
    traffic = {"default": {"gradium": 100 - weight}, "rules": [{"match": {"tenant": "acme"},
                                                                "weights": {"gradium": weight}}]}
    async with front(traffic=traffic) as gw, aiohttp.ClientSession() as s, s.ws_connect(
            f"{gw.ws}/v1/text-to-speech/{RACHEL}/stream-input?output_format=pcm_16000") as ws:
        await ws.send_str(orjson.dumps({"text": " ", "xi_api_key": GW_KEY}).decode())
        await ws.send_str('{"text": "Hi there. "}')
        await ws.send_str('{"text": ""}')
        out = [m async for m in ws]
        assert out and ws.close_code == 1000
        reg = gw.front[METRICS].registry  # type: ignore[attr-defined]
        assert reg.get_sample_value("gateway_traffic_assignments_total", {
            "provider": "elevenlabs", "route": "tts_stream_input", "target": target, "reason": "credential"}) == 1
    assert bool([x for x in standin.seen if "/stream-input" in x.path]) == (target == "legacy")


async def test_readyz_shows_the_config_version(standin: StandIn, front: Front) -> None:
    async with front(traffic={"default": {"gradium": 40}}) as gw, aiohttp.ClientSession() as s, s.get(
            f"{gw.http}/readyz") as r:
        version = (await r.json())["config_version"]
        reg = gw.front[METRICS].registry  # type: ignore[attr-defined]
        assert len(version) == 12 and reg.get_sample_value("gateway_config_info", {"version": version}) == 1
