"""The README's migration playbook, every configuration as written, against the stand-in vendor
(only `legacy:` is added, to point the vendors at the stand-in)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gateway.config import PACKAGE_MAPPINGS, Settings, load_settings
from gateway.traffic.policy import Unit, decide
from tests.standin import StandIn, legacy_section, start_front, start_standin
from tests.traffic.conftest import sha

README = PACKAGE_MAPPINGS.parent / "README.md"
KEY = "gw_demo_key"
VENDOR = {"elevenlabs": "sk_acme_elevenlabs", "deepgram": "dg_acme_deepgram", "cartesia": "sk_car_acme"}
RACHEL = "21m00Tcm4TlvDq8ikWAM"


def playbook(name: str) -> dict[str, Any]:
    m = re.search(rf"<!-- playbook:{name} -->\n```yaml\n(.*?)```", README.read_text(), re.S)
    assert m, f"README playbook step {name!r} not found"
    return yaml.safe_load(m.group(1))


@pytest.fixture
async def standin(tls_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[StandIn]:
    auth = {"mode": "managed", "keys": [{"sha256": sha(k), "tenant": "v"} for k in VENDOR.values()],
            "tenants": {"v": {"gradium_api_key": "gsk_vendor"}}}
    async with start_standin(tls_files, monkeypatch, auth=auth) as s:
        yield s


def settings_for(name: str, standin: StandIn, tls_files: dict[str, Path], tmp_path: Path,
                 env: dict[str, str] | None = None) -> Settings:
    doc = playbook(name)
    doc.update(tls_cert=str(tls_files["cert"]), tls_key=str(tls_files["key"]),
               legacy=legacy_section(standin, tls_files))
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_settings(path, env=env or {})


async def served_by(gw_http: str) -> str:
    async with aiohttp.ClientSession() as s, s.post(
            f"{gw_http}/v1/text-to-speech/{RACHEL}/stream?output_format=pcm_16000", json={"text": "Hello there"},
            headers={"xi-api-key": KEY}) as r:
        assert r.status == 200 and await r.read()
        return r.headers["x-gateway-target"]


async def test_step_1_front_at_100_percent_legacy(standin: StandIn, tls_files: dict[str, Path],
                                                 tmp_path: Path) -> None:
    async with start_front(settings_for("front", standin, tls_files, tmp_path), standin) as gw:
        assert await served_by(gw.http) == "legacy"
        async with aiohttp.ClientSession() as s, s.ws_connect(
                f"{gw.ws}/v1/listen?encoding=linear16&sample_rate=16000", protocols=("token", KEY)) as ws:
            assert ws._response.headers["x-gateway-target"] == "legacy"
            await ws.send_str('{"type":"CloseStream"}')
            assert (await ws.receive_json())["type"] == "Metadata"
    assert standin.last("/text-to-speech/").header("xi-api-key") == VENDOR["elevenlabs"]
    assert standin.last("/v1/listen").header("Authorization") == f"Token {VENDOR['deepgram']}"


async def test_step_2_shadow_five_percent(standin: StandIn, tls_files: dict[str, Path], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the step as written stores in ./gateway-shadow.db: here, the test's directory
    settings = settings_for("shadow", standin, tls_files, tmp_path)
    assert settings.shadow.enabled and settings.shadow.rules[0].rate == 0.05
    async with start_front(settings, standin) as gw:
        assert await served_by(gw.http) == "legacy"  # the client is still served by the vendor


async def test_step_3_ramp(standin: StandIn, tls_files: dict[str, Path], tmp_path: Path) -> None:
    settings = settings_for("ramp", standin, tls_files, tmp_path)
    keys = [f"conversation-{i}" for i in range(4000)]

    def share(when: datetime) -> float:
        units = [Unit("elevenlabs", "tts_stream", "tts", "rest", "acme", keys={"header": k}) for k in keys]
        return sum(decide(settings.traffic, u, when).target == "gradium" for u in units) / len(keys)

    assert 0.03 < share(datetime(2026, 7, 1, tzinfo=UTC)) < 0.07
    assert 0.47 < share(datetime(2026, 7, 10, tzinfo=UTC)) < 0.53
    assert share(datetime(2026, 7, 16, tzinfo=UTC)) == 1.0
    async with start_front(settings, standin) as gw:
        # today is past the last step: every unit on Gradium
        assert await served_by(gw.http) == ("gradium" if datetime.now(UTC) > datetime(2026, 7, 15, 9, tzinfo=UTC)
                                            else "legacy")


async def test_step_4_rollback_with_force(standin: StandIn, tls_files: dict[str, Path], tmp_path: Path) -> None:
    async with start_front(settings_for("rollback", standin, tls_files, tmp_path), standin) as gw:
        assert await served_by(gw.http) == "legacy"
    # the same switch from the environment, over the ramp configuration
    env = {"GATEWAY_TRAFFIC_FORCE": "legacy"}
    async with start_front(settings_for("ramp", standin, tls_files, tmp_path, env), standin) as gw:
        assert await served_by(gw.http) == "legacy"
