"""Operator-facing hardening (issue 8, defect 11 and the newcomer defects): every library logger goes
through the redacting JSON pipeline, env errors name the variable, levels are case-insensitive, `emulate`
logs JSON, and `serve` warns about a configuration that can serve nothing."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import aiohttp
import pytest

from gateway.cli import startup_warnings
from gateway.config import load_settings
from gateway.yamlfile import ConfigFileError
from tests.conftest import Gateway, json_log_sink

KEY = "sk_live_SHOULDNOTLEAK42"


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    with json_log_sink("debug") as sink:
        yield sink


def test_library_loggers_are_json_and_redacted(json_logs: io.StringIO) -> None:
    logging.getLogger("aiohttp.server").error("Error handling request", exc_info=ValueError(
        f"Invalid header value char:\n\n  b'Authorization: Token {KEY}'\n"))
    logging.getLogger("aiohttp.websocket").warning("Client protocols %r don\u2019t overlap server-known ones %r",
                                                   ("token", KEY), ("bearer",))
    logging.getLogger("aiohttp.client").info("b'xi-api-key: %s'", KEY)
    lines = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    assert len(lines) == 3 and {ln["logger"] for ln in lines} == {"aiohttp.server", "aiohttp.websocket",
                                                                   "aiohttp.client"}
    assert KEY not in json_logs.getvalue()


async def test_the_subprotocol_warning_of_a_real_handshake_is_redacted(gateway: Gateway,
                                                                       json_logs: io.StringIO) -> None:
    url = gateway.ws + "/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM/stream-input"
    async with aiohttp.ClientSession() as s, s.ws_connect(url, protocols=("token", KEY),
                                                          headers={"xi-api-key": "k"}) as ws:
        await ws.close()
    out = json_logs.getvalue()
    assert "overlap" in out and KEY not in out
    for line in out.splitlines():
        json.loads(line)


def test_env_errors_name_the_variable_and_levels_are_case_insensitive() -> None:
    assert load_settings(env={"GATEWAY_LOG_LEVEL": "DEBUG"}).log_level == "debug"
    with pytest.raises(ConfigFileError) as e:
        load_settings(env={"GATEWAY_PORT": "eighty", "GATEWAY_TOKEN_SECRET": "short-" + KEY[:5]})
    text = "\n".join(e.value.problems)
    assert "GATEWAY_PORT:" in text and "GATEWAY_TOKEN_SECRET:" in text and "eighty" not in text
    with pytest.raises(ConfigFileError) as e:
        load_settings(env={}, port=70000)
    assert e.value.problems[0].startswith("--port:")


def test_a_config_that_serves_nothing_is_warned_about() -> None:
    managed = load_settings(env={"GATEWAY_AUTH_MODE": "managed"})
    assert [w[0] for w in startup_warnings(managed)] == ["auth.token_secret_unset", "auth.serves_nothing"]
    fine = load_settings(env={"GATEWAY_TOKEN_SECRET": "x" * 40})
    assert startup_warnings(fine) == []


def test_emulate_logs_json_and_names_bad_variables() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "GRADIUM_", "EMULATOR_"))}
    bad = subprocess.run([sys.executable, "-m", "gateway.cli", "emulate"], env={**env, "EMULATOR_PORT": "x"},
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "EMULATOR_PORT" in bad.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "emulate"],
                            env={**env, "EMULATOR_PORT": str(port), "GATEWAY_LOG_LEVEL": "DEBUG"},
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        first = json.loads(proc.stderr.readline())  # type: ignore[union-attr]
        assert "emulator" in first["event"].lower() and first["level"] == "warning"
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
