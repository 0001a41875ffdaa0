"""Bad input on the traffic layer (found by fuzzing it): passthrough and shadow legs answer it like the
translated path does, and leave no vendor socket, shadow leg or error log behind."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import make_mocked_request
from yarl import URL

from gateway.dialects.common import METRICS
from gateway.events import NOT_UPGRADED
from gateway.traffic.router import TRAFFIC
from gateway.traffic.tee import BodyTee, _Gate
from tests.conftest import Gateway, json_log_sink
from tests.gateway.rawhttp import raw_request
from tests.standin import StandIn
from tests.traffic.conftest import GW_KEY, Front
from tests.traffic.test_shadow import auth_with_shadow_keys, finished, live, shadow_cfg

DG = {"Authorization": f"Token {GW_KEY}"}
RACHEL = "21m00Tcm4TlvDq8ikWAM"


async def _plain_get_with_a_body(gw: Gateway, path: str) -> Any:
    """A GET on a WebSocket route that is no upgrade, declaring and sending a JSON body."""
    u = urlsplit(gw.http)
    body = b'{"text": "hello there"}'
    head = (f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Token {GW_KEY}\r\nxi-api-key: {GW_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}").encode()
    return await raw_request(u.hostname or "127.0.0.1", u.port or 80, head, body)


async def test_passthrough_refuses_a_non_upgrade_without_dialling_the_vendor(standin: StandIn, front: Front) -> None:
    async with front() as gw:
        before = len(standin.seen)
        r = await _plain_get_with_a_body(gw, "/v1/listen")
        assert r.status == 400 and orjson.loads(r.body)["err_code"] == "Bad Request", r  # Deepgram's shape
        r = await _plain_get_with_a_body(gw, "/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM/multi-stream-input")
        assert r.status == 422 and "detail" in orjson.loads(r.body), r  # ElevenLabs' shape, as translated
        assert len(standin.seen) == before  # the vendor was never sent an "upgrade" made of that request
        # the next client's socket is not answered on a connection the vendor reads as that request's body
        async with aiohttp.ClientSession() as s, s.ws_connect(
                f"{gw.ws}/v1/listen?encoding=linear16&sample_rate=16000", headers=DG) as ws:
            await ws.send_str('{"type":"CloseStream"}')
            assert [m async for m in ws if m.type == aiohttp.WSMsgType.TEXT]


async def test_a_websocket_dial_keeps_the_raw_path_and_sends_no_body_headers(standin: StandIn,
                                                                              front: Front) -> None:
    async with front() as gw, aiohttp.ClientSession() as s:
        ws = await s.ws_connect(URL(f"{gw.ws}/v1/text-to-speech/%2e%2e/stream-input", encoded=True),
                                headers={"xi-api-key": GW_KEY, "Content-Type": "application/json"})
        await ws.close()
    seen = standin.last("stream-input")
    assert seen.path == "/v1/text-to-speech/%2e%2e/stream-input"  # as sent, as the REST relay sends it
    assert seen.header("Content-Type") is None and seen.header("Content-Length") is None


async def test_a_vendors_refused_upgrade_is_replayed_with_its_body(standin: StandIn, front: Front) -> None:
    url = "/v1/listen?encoding=bogus"
    async with front() as gw, aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await s.ws_connect(gw.ws + url, headers=DG)
        handshake = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                     "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
        async with s.get(gw.http + url, headers={**DG, **handshake}) as r:
            status, ctype, body = r.status, r.headers.get("Content-Type"), await r.read()
    assert status == 400 and ctype and ctype.startswith("application/json")
    assert "encoding" in orjson.loads(body)["err_msg"], body  # the vendor's own words, not aiohttp's


async def test_a_client_gone_mid_body_is_no_error(standin: StandIn, front: Front,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    async with front() as gw:
        u = urlsplit(gw.http)
        for head in (f"POST /v1/listen HTTP/1.1\r\nHost: x\r\nAuthorization: Token {GW_KEY}\r\n"
                     "Content-Type: audio/wav\r\nContent-Length: 500\r\n\r\nRIFF",
                     "POST /v1/text-to-speech/21m00Tcm4TlvDq8ikWAM/stream HTTP/1.1\r\nHost: x\r\n"
                     f"xi-api-key: {GW_KEY}\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{{\"te"):
            reader, writer = await asyncio.open_connection(u.hostname, u.port)
            writer.write(head.encode())
            await writer.drain()
            writer.write_eof()  # 500 bytes announced, a few sent: the client is gone
            assert await reader.read() == b""
            writer.close()
        await asyncio.sleep(0.2)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


async def test_a_shadow_leg_of_a_request_that_never_upgraded_is_dropped(standin: StandIn, front: Front,
                                                                       tmp_path: Any) -> None:
    cfg = {**shadow_cfg(), "store": {"path": str(tmp_path / "shadow.db")}}
    async with front(auth=auth_with_shadow_keys(), traffic={"default": {"gradium": 100}}, shadow=cfg) as gw:
        shadow = gw.front[TRAFFIC].shadow  # type: ignore[attr-defined]
        for _ in range(3):  # more than the default `max_concurrent` (2): none of them may hold a place
            r = await _plain_get_with_a_body(gw, "/v1/listen")
            assert r.status == 400
        reg = gw.front[METRICS].registry  # type: ignore[attr-defined]
        for _ in range(250):
            if not shadow.legs:
                break
            await asyncio.sleep(0.02)
        # counted, no pair row; a dial under way was cancelled with the leg
        assert not shadow.legs and not shadow.finished
        assert reg.get_sample_value("gateway_shadow_legs_total", {
            "provider": "deepgram", "route": "listen_live", "shadow_target": "legacy", "outcome": NOT_UPGRADED,
            "pair_kind": "candidate"}) == 3
        # and a real session right after is shadowed as ever
        await live(gw)
        rows = await finished(gw, 1)
        assert [row["outcome"] for row in rows] == ["completed"] and not shadow.legs


@pytest.mark.parametrize(("gradium", "shadow_target"), [(100, "legacy"), (0, "gradium")])
async def test_a_shadow_leg_of_a_refused_handshake_is_dropped_not_failed(standin: StandIn, front: Front,
                                                                         tmp_path: Any, gradium: int,
                                                                         shadow_target: str) -> None:
    """Found by fuzzing with new seeds: a handshake its primary refused (Deepgram's 400 for a bad parameter,
    the gateway's own or the vendor's replayed) sent its shadow leg on to the other side, where the same
    request failed again, counted as a `shadow_error` with a pair row."""
    cfg = {**shadow_cfg(), "store": {"path": str(tmp_path / "shadow.db")}}
    async with front(auth=auth_with_shadow_keys(), traffic={"default": {"gradium": gradium}}, shadow=cfg) as gw:
        shadow = gw.front[TRAFFIC].shadow  # type: ignore[attr-defined]
        async with aiohttp.ClientSession() as s:
            for _ in range(3):
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await s.ws_connect(f"{gw.ws}/v1/listen?encoding=bogus&sample_rate=16000", headers=DG)
                assert refused.value.status == 400
        for _ in range(250):
            if not shadow.legs:
                break
            await asyncio.sleep(0.02)
        reg = gw.front[METRICS].registry  # type: ignore[attr-defined]
        labels = {"provider": "deepgram", "route": "listen_live", "shadow_target": shadow_target,
                  "pair_kind": "candidate"}
        assert not shadow.legs and not shadow.finished  # counted, no pair row
        assert reg.get_sample_value("gateway_shadow_legs_total", {**labels, "outcome": NOT_UPGRADED}) == 3
        assert reg.get_sample_value("gateway_shadow_legs_total", {**labels, "outcome": "shadow_error"}) is None


async def test_a_body_copy_closed_before_it_ran_still_says_it_is_done() -> None:
    """The REST shadow leg waits on `done`: a primary that answers without reading its body (a refused
    credential) closes the copy before its task ever ran."""
    payload = aiohttp.StreamReader(_Gate(), 2**16, loop=asyncio.get_running_loop())  # type: ignore[arg-type]
    tee = BodyTee(make_mocked_request("POST", "/v1/listen", payload=payload), limit=1024)
    await tee.close()
    assert tee.done.is_set() and tee.body() is None


async def test_line_breaks_in_a_credential_or_a_path_reach_no_vendor_request(standin: StandIn, front: Front,
                                                                            tmp_path: Any) -> None:
    """A forged first-message key with a line break (forward mode: it would become the vendor's header) is
    the client's error; a voice id with an encoded line break stays encoded in the shadow leg's path."""
    with json_log_sink("info") as logs:
        async with front(auth={"mode": "forward"}) as gw, aiohttp.ClientSession() as s, s.ws_connect(
                f"{gw.ws}/v1/text-to-speech/{RACHEL}/stream-input") as ws:
            await ws.send_str(orjson.dumps({"text": " ", "xi_api_key": "k\r\nX-Evil: 1"}).decode())
            msgs = [m async for m in ws]
            assert ws.close_code is not None and ws.close_code >= 1002, (ws.close_code, msgs)
        cfg = {**shadow_cfg(), "store": {"path": str(tmp_path / "shadow.db")}}
        async with front(auth=auth_with_shadow_keys(), traffic={"default": {"gradium": 100}}, shadow=cfg) as gw:
            async with aiohttp.ClientSession() as s, s.ws_connect(
                    URL(f"{gw.ws}/v1/text-to-speech/%0D%0AX/stream-input", encoded=True),
                    headers={"xi-api-key": GW_KEY}) as ws:
                await ws.send_str('{"text": " "}')
                await ws.send_str('{"text": "hi. "}')
                await ws.send_str('{"text": ""}')
                _ = [m async for m in ws]
            async with aiohttp.ClientSession() as s, s.post(
                    URL(f"{gw.http}/v1/text-to-speech/%0D%0AX/stream", encoded=True), json={"text": "hi."},
                    headers={"xi-api-key": GW_KEY}) as r:
                await r.read()
            shadow = gw.front[TRAFFIC].shadow  # type: ignore[attr-defined]
            for _ in range(500):
                if not shadow.legs:
                    break
                await asyncio.sleep(0.02)
        assert sorted(x.path for x in standin.seen if x.header("X-Gateway-Pair-Id")) == [
            "/v1/text-to-speech/%0D%0AX/stream", "/v1/text-to-speech/%0D%0AX/stream-input"]
    lines = [orjson.loads(ln) for ln in logs.getvalue().splitlines() if ln.startswith("{")]
    errors = [ln["event"] for ln in lines if ln.get("level") == "error"]
    assert not errors, errors
    assert "X-Evil" not in repr([x.headers for x in standin.seen])
