"""The README's TLS recipe and the three complete examples (issue 8, newcomer defects), run as written:
a certificate from `python -m trustme`, `gradium-gateway serve` on it, each example trusting it through
SSL_CERT_FILE. Ports are ephemeral here (GATEWAY_PORT / GATEWAY_TLS_PORT / GATEWAY_URL, as documented)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    work = tmp_path_factory.mktemp("laptop")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "GRADIUM_", "SSL_CERT"))}
    # README: python -m trustme -d certs
    (work / "certs").mkdir()
    subprocess.run([sys.executable, "-m", "trustme", "-d", "certs", "-q"], cwd=work, env=env, check=True, timeout=60)
    port, tls_port = _free_port(), _free_port()
    serve_env = {**env, "GATEWAY_TLS_CERT": "certs/server.pem", "GATEWAY_TLS_KEY": "certs/server.key",
                 "GATEWAY_PORT": str(port), "GATEWAY_TLS_PORT": str(tls_port)}
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve"], cwd=work, env=serve_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", tls_port), timeout=0.5):
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "the gateway did not start"
                time.sleep(0.2)
        yield work, {**env, "GATEWAY_URL": f"https://localhost:{tls_port}", "SSL_CERT_FILE": "certs/client.pem"}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.parametrize("example", ["elevenlabs_example.py", "deepgram_example.py", "cartesia_example.py"])
def test_example_runs_as_written(served: tuple[Path, dict[str, str]], example: str) -> None:
    work, env = served
    r = subprocess.run([sys.executable, str(ROOT / "examples" / example)], cwd=work, env=env, capture_output=True,
                       text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "hello from the gateway" in r.stdout.lower(), r.stdout
