"""Real gateway processes for the fleet tests: `gradium-gateway serve` (and `emulate`) as subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADIUM_", "GATEWAY_", "PROMETHEUS_"))}
    env.update(GATEWAY_LOG_LEVEL="info", **extra)
    return env


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
    return out


@dataclass
class Proc:
    popen: subprocess.Popen[str]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 30) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise


def start(args: list[str], env: dict[str, str], log: Path, port: int | None = None) -> Proc:
    port = port or free_port()
    with log.open("w") as f:
        popen = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", *args, "--port", str(port)], env=env, stdout=f, stderr=f, text=True
        )
    return Proc(popen, port, log)


async def wait_ready(proc: Proc, path: str = "/readyz", timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while time.monotonic() < deadline:
            assert proc.popen.poll() is None, f"exited {proc.popen.returncode}:\n{proc.output()[-3000:]}"
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with http.get(proc.url + path) as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise AssertionError(f"not ready after {timeout}s:\n{proc.output()[-3000:]}")



async def wait_workers(proc: Proc, count: int, timeout: float = 60) -> None:
    """Every worker listening (each logs `gateway.listening`): connections the kernel hands to a worker
    still starting would wait in its backlog."""
    deadline = time.monotonic() + timeout
    while proc.output().count('"gateway.listening"') < count:
        assert time.monotonic() < deadline, f"{count} workers not listening after {timeout}s:\n{proc.output()[-3000:]}"
        assert proc.popen.poll() is None, proc.output()[-3000:]
        await asyncio.sleep(0.1)
