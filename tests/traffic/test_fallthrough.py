"""`fallthrough: legacy` (specs/traffic.md §2, end): unrouted paths under a provider prefix reach the vendor
with the tenant's vendor key, everything else byte for byte; off by default (the provider's 404)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gateway.config import PACKAGE_MAPPINGS, load_settings
from gateway.dialects.common import METRICS
from tests.standin import StandIn, legacy_section, start_front, start_standin
from tests.traffic.conftest import GW_KEY, VENDOR_KEYS, Front, managed_auth, sha

README = PACKAGE_MAPPINGS.parent / "README.md"


def dubbing_form() -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("target_lang", "fr")
    form.add_field("file", b"RIFF....WAVE" + bytes(range(256)) * 40, filename="a.wav", content_type="audio/wav")
    return form


async def test_unrouted_paths_go_to_the_vendor_with_its_key(standin: StandIn, front: Front) -> None:
    async with front(auth=managed_auth(fallthrough="legacy")) as gw, aiohttp.ClientSession() as s:
        async with s.post(f"{gw.http}/elevenlabs/v1/dubbing?dry=1&b=%20x", data=dubbing_form(),
                          headers={"xi-api-key": GW_KEY, "X-App": "a b", "Connection": "keep-alive, X-Hop",
                                   "X-Hop": "no"}) as r:
            got = await r.json()
            assert r.status == 200 and r.headers["x-gateway-target"] == "legacy", got
            assert r.headers["request-id"] == "vendor-only-1"  # the vendor's headers
        seen = standin.last("/v1/dubbing")
        assert seen.path == "/v1/dubbing" and seen.query == "dry=1&b=%20x" and got["query"] == "dry=1&b=%20x"
        assert seen.header("xi-api-key") == VENDOR_KEYS["elevenlabs"] and GW_KEY not in repr(seen.headers)
        assert seen.header("X-App") == "a b" and seen.header("X-Hop") is None
        assert seen.header("Content-Type").startswith("multipart/form-data; boundary=")
        assert got["sha256"] == seen.body_sha256 and got["bytes"] == seen.body_len > 10_000

        # Deepgram: `Authorization: Token` swapped, query credential stripped
        async with s.get(f"{gw.http}/deepgram/v1/projects/p1/usage?start=2026-01-01&token=x",
                         headers={"Authorization": f"Token {GW_KEY}"}) as r:
            assert r.status == 200 and (await r.json())["path"] == "/v1/projects/p1/usage"
        seen = standin.last("/usage")
        assert seen.header("Authorization") == f"Token {VENDOR_KEYS['deepgram']}" and seen.query == "start=2026-01-01"

        # a socket only the vendor serves (agents): frames relayed as they are, both ways
        async with s.ws_connect(f"{gw.ws}/elevenlabs/v1/convai/conversation?agent_id=a1",
                                headers={"xi-api-key": GW_KEY}) as ws:
            assert ws._response.headers["x-gateway-target"] == "legacy"
            await ws.send_str('{"type":"user_message","text":"hi"}')
            assert (await ws.receive()).data == 'echo:{"type":"user_message","text":"hi"}'
            await ws.send_bytes(b"\x01\x02\x03")
            assert (await ws.receive()).data == b"\x03\x02\x01"
        seen = standin.last("/v1/convai/conversation")
        assert seen.header("xi-api-key") == VENDOR_KEYS["elevenlabs"] and seen.query == "agent_id=a1"
        assert seen.frames_in == [("TEXT", b'{"type":"user_message","text":"hi"}'), ("BINARY", b"\x01\x02\x03")]

        # served routes are still the gateway's own (its split decides), unknown keys are not relayed
        async with s.post(f"{gw.http}/elevenlabs/v1/dubbing", data=b"x", headers={"xi-api-key": "stranger"}) as r:
            assert r.status == 404 and (await r.json())["detail"]
        reg = gw.front[METRICS].registry  # type: ignore[attr-defined]
        assert reg.get_sample_value("gateway_traffic_assignments_total", {
            "provider": "elevenlabs", "route": "fallthrough", "target": "legacy", "reason": "fallthrough"}) == 2


async def test_off_by_default_the_provider_404_stays(standin: StandIn, front: Front) -> None:
    async with front() as gw, aiohttp.ClientSession() as s:
        async with s.post(f"{gw.http}/elevenlabs/v1/dubbing", data=dubbing_form(),
                          headers={"xi-api-key": GW_KEY}) as r:
            body = await r.json()
            assert r.status == 404 and "x-gateway-target" not in r.headers and body["detail"]
        async with s.delete(f"{gw.http}/deepgram/v1/listen", headers={"Authorization": f"Token {GW_KEY}"}) as r:
            assert r.status == 405 and "POST" in r.headers["Allow"]
    assert not [x for x in standin.seen if "dubbing" in x.path or x.method == "DELETE"]


async def test_wrong_vendor_key_is_the_vendors_own_refusal(standin: StandIn, front: Front) -> None:
    tenant: dict[str, Any] = {"legacy_keys": {**VENDOR_KEYS, "elevenlabs": "sk_revoked"}, "fallthrough": "legacy"}
    async with front(auth=managed_auth(**tenant)) as gw, aiohttp.ClientSession() as s, \
            s.post(f"{gw.http}/elevenlabs/v1/dubbing", data=b"{}", headers={"xi-api-key": GW_KEY}) as r:
        assert r.status == 401 and r.headers["x-gateway-target"] == "legacy"


async def test_readme_fallthrough_example(tls_files: dict[str, Path], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    m = re.search(r"<!-- fallthrough-example[^>]*-->\n```yaml\n(.*?)```", README.read_text(), re.S)
    assert m, "README fallthrough example not found"
    doc = yaml.safe_load(m.group(1))
    key, vendor_key = "gw_demo_key", doc["auth"]["tenants"]["acme"]["legacy_keys"]["elevenlabs"]
    assert doc["auth"]["keys"][0]["sha256"] == sha(key)
    vendor_auth = {"mode": "managed", "keys": [{"sha256": sha(vendor_key), "tenant": "v"}],
                   "tenants": {"v": {"gradium_api_key": "gsk_vendor"}}}
    async with start_standin(tls_files, monkeypatch, auth=vendor_auth) as standin:
        doc.update(tls_cert=str(tls_files["cert"]), tls_key=str(tls_files["key"]),
                   legacy=legacy_section(standin, tls_files))
        path = tmp_path / "gateway.yaml"
        path.write_text(yaml.safe_dump(doc))
        await _readme_example(standin, load_settings(path, env={}), key, vendor_key)


async def _readme_example(standin: StandIn, settings: Any, key: str, vendor_key: str) -> None:
    async with start_front(settings, standin) as gw, aiohttp.ClientSession() as s:
        async with s.post(f"{gw.http}/elevenlabs/v1/dubbing", data=b"abc", headers={"xi-api-key": key}) as r:
            got = await r.json()
            assert r.status == 200 and got["sha256"] == hashlib.sha256(b"abc").hexdigest()
        async with s.post(f"{gw.http}/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM?output_format=pcm_16000",
                          json={"text": "Hi"}, headers={"xi-api-key": key}) as r:
            assert r.status == 200 and await r.read()  # served routes stay the gateway's
    assert standin.last("/v1/dubbing").header("xi-api-key") == vendor_key


def test_fallthrough_without_vendor_keys_is_a_load_error(tmp_path: Path) -> None:
    from gateway.app import create_app
    from gateway.yamlfile import ConfigFileError

    doc = {"auth": {"mode": "managed", "keys": [{"sha256": sha("k"), "tenant": "acme"}],
                    "tenants": {"acme": {"gradium_api_key": "g", "fallthrough": "legacy"}}}}
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(ConfigFileError) as e:
        create_app(load_settings(path, env={}))
    assert "auth.tenants.acme.fallthrough" in str(e.value) and str(path) in str(e.value)
