"""The gateway as an operator runs it: `serve` with no configuration, config errors, health, logs."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import structlog

from gateway.config import load_settings
from gateway.observability import configure_logging
from gateway.yamlfile import ConfigFileError
from tests.audiocheck import decode, expected_words, words
from tests.conftest import Gateway


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("GRADIUM_", "GATEWAY_"))}


def test_serve_with_no_configuration_runs_on_the_emulator(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--port", str(port)],
                            env=clean_env(), stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        first = json.loads(proc.stderr.readline())  # type: ignore[union-attr]
        assert first["event"] == "gateway.using_builtin_emulator" and "EMULATOR" in first["message"]
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                    break
            except OSError:
                time.sleep(0.05)
        # the README's curl example, as a test
        out = tmp_path / "hello.mp3"
        subprocess.run(
            ["curl", "-sf", "-X", "POST", f"http://127.0.0.1:{port}/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM",
             "-H", "xi-api-key: any-key-works-on-the-emulator", "-H", "Content-Type: application/json",
             "-d", '{"text": "Hello from the gateway."}', "-o", str(out)],
            check=True, timeout=30,
        )
        d = decode(out.read_bytes())
        assert d.codec.startswith("mp3") and d.sample_rate == 44100
        assert words(d.pcm, d.sample_rate) == expected_words("Hello from the gateway.")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0  # docker stop is a clean exit


def test_invalid_config_names_file_line_and_field(tmp_path: Path) -> None:
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text("port: 8080\ngradium:\n  base_url: ftp://nope\nlimits:\n  max_body_bytes: -1\n")
    with pytest.raises(ConfigFileError) as e:
        load_settings(cfg, env={})
    problems = e.value.problems
    assert f"{cfg}:3: gradium.base_url: Value error, must start with http:// or https://" in problems
    assert any(p.startswith(f"{cfg}:5: limits.max_body_bytes:") for p in problems)
    r = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--config", str(cfg)], env=clean_env(),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and f"{cfg}:3: gradium.base_url" in r.stderr


def test_environment_overrides_file(tmp_path: Path) -> None:
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text("port: 9000\nhost: 0.0.0.0\n")
    s = load_settings(cfg, env={"GATEWAY_PORT": "9100", "GRADIUM_API_KEY": "gsk_x"})
    assert (s.host, s.port, s.uses_emulator) == ("0.0.0.0", 9100, False)
    assert load_settings(None, env={}).uses_emulator


async def test_health_ready_metrics(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(gateway.http + "/healthz") as r:
            assert r.status == 200 and (await r.json())["status"] == "ok"
        async with s.get(gateway.https + "/readyz", ssl=False) as r:  # TLS listener serves the same routes
            body = await r.json()
            assert r.status == 200 and {"elevenlabs", "deepgram"} <= set(body["providers"])
        async with s.post(gateway.http + "/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM?output_format=pcm_16000",
                          json={"text": "count me"}, headers={"xi-api-key": "k"}) as r:
            await r.read()
        async with s.get(gateway.http + "/metrics") as r:
            text = await r.text()
            assert ('gateway_requests_total{provider="elevenlabs",route="tts_convert",status="200",'
                    'target="gradium"} 1.0') in text
            assert "gateway_time_to_first_output_seconds_bucket" in text


async def test_logs_are_json_with_context_and_no_secrets(gateway: Gateway) -> None:
    buf = io.StringIO()
    configure_logging("info", stream=buf)
    try:
        secret = "gsk_live_TOPSECRET_0123456789"
        async with aiohttp.ClientSession() as s:
            async with s.post(gateway.http + "/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM?output_format=pcm_16000",
                              json={"text": "log me"}, headers={"xi-api-key": secret}) as r:
                await r.read()
            async with s.post(gateway.http + "/v1/text-to-speech/nope", json={"text": "x"},
                              headers={"xi-api-key": secret}) as r:
                assert r.status == 400
            async with s.ws_connect(f"{gateway.ws}/v1/listen?encoding=linear16&sample_rate=16000&token={secret}"):
                pass
        for _ in range(100):  # the server logs the session's end after the client has gone
            if '"ws.done"' in buf.getvalue():
                break
            await asyncio.sleep(0.02)
        structlog.get_logger("gateway").info("direct", api_key=secret, url=f"wss://x/?token={secret}")
    finally:
        configure_logging("info")
    out = buf.getvalue()
    assert secret not in out
    lines = [json.loads(line) for line in out.splitlines()]
    done = [x for x in lines if x["event"] == "request.done"]
    assert done and done[0]["provider"] == "elevenlabs" and done[0]["route"] == "tts_convert"
    assert done[0]["request_id"] and done[0]["ms"] >= 0 and "first_output_ms" in done[0]
    assert any(x["event"] == "request.error" and x["kind"] == "voice_not_found" for x in lines)
    assert any(x["event"] == "ws.done" and x["route"] == "listen_live" for x in lines)


async def test_a_client_that_leaves_is_logged_as_gone_not_as_a_gateway_error(gateway: Gateway) -> None:
    """A caller that closes mid-body or mid-response is a 499 `client_gone` line, without a traceback: a
    500 `internal` line (what "Connection lost" was logged as) would page an operator for nobody's bug."""
    buf = io.StringIO()
    configure_logging("info", stream=buf)
    host, port = gateway.http.removeprefix("http://").split(":")
    try:
        _, w = await asyncio.open_connection(host, int(port))  # announces 100 more bytes than it sends
        w.write(b"POST /v1/text-to-speech/21m00Tcm4TlvDq8ikWAM HTTP/1.1\r\nHost: x\r\nxi-api-key: gsk_a\r\n"
                b"Content-Type: application/json\r\nContent-Length: 120\r\n\r\n{\"text\": \"half")
        await w.drain()
        await asyncio.sleep(0.05)
        w.close()
        r, w = await asyncio.open_connection(host, int(port))  # reads the first bytes of a long answer, leaves
        body = b'{"text": "' + b"a long sentence to speak. " * 40 + b'"}'
        w.write(b"POST /v1/text-to-speech/21m00Tcm4TlvDq8ikWAM/stream?output_format=pcm_16000 HTTP/1.1\r\n"
                b"Host: x\r\nxi-api-key: gsk_a\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        await r.readexactly(4096)
        w.transport.abort()
        for _ in range(200):
            if buf.getvalue().count('"request.') >= 2:
                break
            await asyncio.sleep(0.02)
    finally:
        configure_logging("info")
    lines = [json.loads(line) for line in buf.getvalue().splitlines() if '"request.' in line]
    assert [(x["route"], x["status"], x.get("kind")) for x in lines] == [
        ("tts_convert", 499, "client_gone"), ("tts_stream", 499, "client_gone")]
    assert not any("exception" in x for x in lines)
