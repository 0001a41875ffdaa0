"""Start and stop the emulator and the gateway as separate processes on free loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class StartError(RuntimeError):
    """A process exited or never became ready; the message carries the tail of its log."""


@dataclass
class Proc:
    name: str
    port: int
    process: asyncio.subprocess.Process
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def alive(self) -> bool:
        return self.process.returncode is None

    def cpu_s(self) -> float | None:
        """User + system CPU seconds used so far (Linux /proc); None elsewhere or once it is gone."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _command(*args: str) -> list[str]:
    exe = shutil.which("gradium-gateway")
    return [exe, *args] if exe else [sys.executable, "-m", "gateway.cli", *args]


async def _tcp_ready(port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def _healthz_ready(port: int) -> bool:
    timeout = aiohttp.ClientTimeout(total=2.0)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.get(f"http://{HOST}:{port}/healthz") as resp,
        ):
            return resp.status == 200
    except (aiohttp.ClientError, OSError, TimeoutError):
        return False


async def _start(name: str, argv: list[str], env: dict[str, str], port: int, log_dir: Path, http: bool) -> Proc:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT, env=env
        )
    proc = Proc(name, port, process, log_path)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if not proc.alive():
            raise StartError(f"{name} exited with code {process.returncode} before it was ready:\n{proc.log_tail()}")
        if await (_healthz_ready(port) if http else _tcp_ready(port)):
            return proc
        await asyncio.sleep(0.1)
    await stop(proc)
    raise StartError(f"{name} not ready after {START_TIMEOUT_S:.0f}s:\n{proc.log_tail()}")


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("GATEWAY_CONFIG", "GRADIUM_API_KEY"):  # drop-in mode: the client's key is forwarded
        env.pop(key, None)
    env.update(GATEWAY_LOG_LEVEL="warning", **extra)
    return env


async def start_emulator(log_dir: Path) -> Proc:
    port = free_port()
    argv = _command("emulate", "--host", HOST, "--port", str(port))
    return await _start("emulator", argv, _env(), port, log_dir, http=False)


async def start_gateway(emulator_url: str, log_dir: Path) -> Proc:
    port = free_port()
    argv = _command("serve", "--host", HOST, "--port", str(port))
    return await _start("gateway", argv, _env(GRADIUM_BASE_URL=f"{emulator_url}/api"), port, log_dir, http=True)


async def stop(proc: Proc) -> int | None:
    """SIGTERM, then SIGKILL after a grace period; returns the exit code."""
    if proc.alive():
        with contextlib.suppress(ProcessLookupError):
            proc.process.terminate()
        try:
            await asyncio.wait_for(proc.process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.process.kill()
            await asyncio.wait_for(proc.process.wait(), STOP_TIMEOUT_S)
    return proc.process.returncode
