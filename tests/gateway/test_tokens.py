"""Gateway tokens (issue 8, defects 2, 3, 13): signed JWTs under `auth.token_secret`, scoped to
`provider:route`, minted only by a valid API key, single-use enforced by a bounded used set."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest

from gateway.errors import GatewayError
from gateway.tokens import MemoryUsedTokens, TokenIssuer
from tests.audiocheck import wav_bytes
from tests.conftest import Emulator, Gateway, gateway_settings, start_gateway

KEY = "gsk_token_owner"
XI = {"xi-api-key": KEY}
DG = {"Authorization": f"Token {KEY}"}
CA = {"Authorization": f"Bearer {KEY}", "Cartesia-Version": "2026-03-01"}
SECRET = "s" * 40


async def call(gw: Gateway, method: str, path: str, headers: dict[str, str] | None = None,
               json: Any = None, data: bytes | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.request(method, gw.http + path, headers=headers or {}, json=json,
                                                       data=data) as r:
        body = await r.read()
        try:
            return r.status, await r.json(content_type=None)
        except ValueError:
            return r.status, body


async def el_token(gw: Gateway, kind: str = "realtime_scribe", headers: dict[str, str] | None = None) -> str:
    status, body = await call(gw, "POST", f"/v1/single-use-token/{kind}", headers or XI)
    assert status == 200, body
    return body["token"]


async def dg_grant(gw: Gateway, headers: dict[str, str] | None = None, ttl: int | None = None) -> str:
    status, body = await call(gw, "POST", "/v1/auth/grant", headers or DG,
                              json={"ttl_seconds": ttl} if ttl else {})
    assert status == 200, body
    return body["access_token"]


async def ca_token(gw: Gateway, grants: dict[str, bool]) -> str:
    status, body = await call(gw, "POST", "/access-token", CA, json={"grants": grants})
    assert status == 200, body
    return body["token"]


async def el_stt_with_token(gw: Gateway, token: str) -> int:
    form = aiohttp.FormData()
    form.add_field("model_id", "scribe_v1")
    form.add_field("file", wav_bytes("hello", 16000), filename="a.wav", content_type="audio/wav")
    async with aiohttp.ClientSession() as s, s.post(f"{gw.http}/v1/speech-to-text?token={token}", data=form) as r:
        await r.read()
        return r.status


async def test_a_token_never_mints_a_token(gateway: Gateway) -> None:
    el = await el_token(gateway)
    for kind in ("realtime_scribe", "tts_websocket", "batch_scribe"):
        status, body = await call(gateway, "POST", f"/v1/single-use-token/{kind}", {"xi-api-key": el})
        assert status == 403 and body["detail"]["status"] == "missing_permissions", body
    grant = await dg_grant(gateway, ttl=5)
    status, body = await call(gateway, "POST", "/v1/auth/grant", {"Authorization": f"Bearer {grant}"},
                              json={"ttl_seconds": 3600})
    assert status == 403 and body["err_code"] == "INSUFFICIENT_PERMISSIONS", body
    # nor a token of another provider's shape
    status, _ = await call(gateway, "POST", "/v1/single-use-token/realtime_scribe", {"xi-api-key": grant})
    assert status in (401, 403)
    status, _ = await call(gateway, "POST", "/access-token", {"Authorization": f"Bearer {grant}"}, json={})
    assert status == 403


async def test_scopes_name_provider_and_route(gateway: Gateway) -> None:
    grant = await dg_grant(gateway)
    bearer = {"Authorization": f"Bearer {grant}"}
    assert (await call(gateway, "GET", "/v1/projects", bearer))[0] == 200  # its own provider
    assert (await call(gateway, "GET", "/v1/voices", {"xi-api-key": grant}))[0] == 401  # ElevenLabs
    assert (await call(gateway, "GET", "/voices", {**bearer, "Cartesia-Version": "2026-03-01"}))[0] == 401
    assert (await call(gateway, "POST", "/tts/bytes", {**bearer, "Cartesia-Version": "2026-03-01"},
                       json={"transcript": "hi", "model_id": "sonic-2", "voice": {"mode": "id", "id": "x"},
                             "output_format": {"container": "wav", "encoding": "pcm_s16le",
                                               "sample_rate": 16000}}))[0] == 401
    stt_only = await ca_token(gateway, {"stt": True})
    assert (await call(gateway, "GET", "/v1/voices", {"xi-api-key": stt_only}))[0] == 401
    cbearer = {"Authorization": f"Bearer {stt_only}", "Cartesia-Version": "2026-03-01"}
    assert (await call(gateway, "GET", "/voices", cbearer))[0] == 200  # `always` routes of its provider
    assert (await call(gateway, "POST", "/tts/bytes", cbearer, json={"transcript": "hi"}))[0] == 401


async def test_static_routes_check_scope_and_do_not_use_tokens_up(gateway: Gateway) -> None:
    token = await el_token(gateway, "batch_scribe")
    status, _ = await call(gateway, "GET", f"/v1/voices/settings/default?token={token}")
    assert status == 401
    assert await el_stt_with_token(gateway, token) == 200  # still unused: its own route takes it once
    assert await el_stt_with_token(gateway, token) == 401  # and only once


async def test_tokens_are_signed_jwts_with_tenant_scope_expiry_and_id(gateway: Gateway) -> None:
    grant = await dg_grant(gateway, ttl=60)
    claims = jwt.decode(grant, options={"verify_signature": False})
    assert claims["scope"] == ["deepgram:*"] and claims["jti"] and claims["tenant"]
    assert 55 <= claims["exp"] - time.time() <= 61
    assert KEY not in grant and KEY not in str(claims)  # the upstream key is sealed, never readable
    el = await el_token(gateway, "tts_websocket")
    assert el.startswith("gwt_")
    el_claims = jwt.decode(el[4:], options={"verify_signature": False})
    assert el_claims["single_use"] is True and "elevenlabs:tts_stream_input" in el_claims["scope"]
    # a forged token (right shape, wrong secret) and a tampered one are refused
    forged, _ = TokenIssuer(b"x" * 32).mint(tenant="t", scopes=["deepgram:*"], ttl_s=60, single_use=False,
                                            upstream_key=KEY)
    assert (await call(gateway, "GET", "/v1/projects", {"Authorization": f"Bearer {forged}"}))[0] == 401
    head, body, sig = grant.split(".")
    tampered = f"{head}.{body[:-2]}AA.{sig}"
    assert (await call(gateway, "GET", "/v1/projects", {"Authorization": f"Bearer {tampered}"}))[0] == 401


async def test_tokens_survive_restart_and_work_on_another_worker(emulator: Emulator,
                                                                 tls_files: dict[str, Path]) -> None:
    settings = gateway_settings(emulator, tls_files, auth={"token_secret": SECRET})
    async with start_gateway(settings, emulator) as first:
        grant = await dg_grant(first)
        once = await el_token(first, "batch_scribe")
    async with start_gateway(settings, emulator) as second:  # a restart, or another worker with the secret
        assert (await call(second, "GET", "/v1/projects", {"Authorization": f"Bearer {grant}"}))[0] == 200
        assert await el_stt_with_token(second, once) == 200
    other = gateway_settings(emulator, tls_files, auth={"token_secret": "o" * 40})
    async with start_gateway(other, emulator) as third:
        assert (await call(third, "GET", "/v1/projects", {"Authorization": f"Bearer {grant}"}))[0] == 401


async def test_minting_needs_a_valid_key(gateway: Gateway) -> None:
    for path, headers, field in [
        ("/v1/single-use-token/realtime_scribe", {"xi-api-key": "revoked_x"}, "detail"),
        ("/v1/auth/grant", {"Authorization": "Token revoked_x"}, "err_code"),
        ("/access-token", {"Authorization": "Bearer revoked_x", "Cartesia-Version": "2026-03-01"}, None),
    ]:
        status, body = await call(gateway, "POST", path, headers, json={})
        assert status == 401, (path, body)
        assert field is None or field in body


async def test_managed_tokens_die_with_their_minters_key(emulator: Emulator, tls_files: dict[str, Path]) -> None:
    gw_key = "gwk_team_a"
    digest = hashlib.sha256(gw_key.encode()).hexdigest()
    auth: dict[str, Any] = {"mode": "managed", "token_secret": SECRET,
                            "keys": [{"sha256": digest, "tenant": "a"}], "tenants": {"a": {"gradium_api_key": KEY}}}
    async with start_gateway(gateway_settings(emulator, tls_files, auth=auth), emulator) as gw:
        grant = await dg_grant(gw, {"Authorization": f"Token {gw_key}"})
        assert jwt.decode(grant, options={"verify_signature": False})["tenant"] == "a"
        assert (await call(gw, "GET", "/v1/projects", {"Authorization": f"Bearer {grant}"}))[0] == 200
    revoked = {**auth, "keys": []}
    async with start_gateway(gateway_settings(emulator, tls_files, auth=revoked), emulator) as gw:
        assert (await call(gw, "GET", "/v1/projects", {"Authorization": f"Bearer {grant}"}))[0] == 401


async def test_used_set_is_bounded_and_forgets_expired_tokens() -> None:
    used = MemoryUsedTokens(max_entries=2)
    now = time.time()
    assert await used.claim("a", now + 60)
    assert not await used.claim("a", now + 60)
    assert await used.claim("old", now - 120)  # expired long ago: swept on the next claim
    assert await used.claim("b", now + 60)
    assert len(used) == 2
    with pytest.raises(GatewayError) as e:
        await used.claim("c", now + 60)  # full of live entries: refused, never by forgetting a used one
    assert e.value.kind == "rate_limited"
    assert not await used.claim("a", now + 60)
