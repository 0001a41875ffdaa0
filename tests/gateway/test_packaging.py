"""The wheel (issue 8, newcomer defects): `pip install .` (not editable) ships the mappings inside the
package, so the installed gateway checks its mappings and serves from any directory."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_wheel_install_ships_the_mappings_and_serves(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    # offline: the test's own setuptools builds the wheel (no isolated build env to download)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels)], check=True, timeout=300, cwd=tmp_path)
    wheel = next(wheels.glob("gradium_gateway-*.whl"))
    venv = tmp_path / "venv"
    # the dependencies come from this environment's site-packages; the gateway itself only from the wheel
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)], check=True,
                   timeout=120)
    py = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q",
                    str(wheel)], check=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "GRADIUM_", "PYTHONPATH"))}
    where = subprocess.run([str(py), "-c", "import gateway, gateway.config as c; print(gateway.__file__);"
                            "print(c.PACKAGE_MAPPINGS)"], check=True, capture_output=True, text=True, cwd=tmp_path,
                           env=env, timeout=60).stdout.split()
    assert where[0].startswith(str(venv)) and where[1].startswith(str(venv)), where
    check = subprocess.run([str(venv / "bin" / "gradium-gateway"), "check"], capture_output=True, text=True,
                           cwd=tmp_path, env=env, timeout=60)
    assert check.returncode == 0 and "_mappings: ok" in check.stdout, check
    port = _free_port()
    proc = subprocess.Popen([str(venv / "bin" / "gradium-gateway"), "serve", "--port", str(port)], cwd=tmp_path,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    body = json.loads(r.read())
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()  # type: ignore[union-attr]
                time.sleep(0.2)
        assert body["status"] == "ready" and body["providers"] == ["cartesia", "deepgram", "elevenlabs"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
