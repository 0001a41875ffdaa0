"""Start and stop the emulator and the gateway as separate processes on free loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

HOST = "127.0.0.1"
START_TIMEOUT_S = 120.0  # worker start-up on a loaded machine
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
        """User + system CPU seconds used so far by the process and its live children (workers)."""
        pids = tree_pids(self.process.pid)
        if not pids:
            return None
        return sum(_stat_cpu(pid) for pid in pids)

    def rss_mb(self) -> float:
        """Resident memory of the process and its live children."""
        total = 0
        for pid in tree_pids(self.process.pid):
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        return total * os.sysconf("SC_PAGE_SIZE") / 2**20

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _stat_fields(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _stat_cpu(pid: int) -> float:
    try:
        fields = _stat_fields(pid)
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime


def pid_cpu_ns(pid: int) -> int:
    """CPU time of a process, every thread, in ns (schedstat: finer than /proc/stat ticks); 0 once it is gone."""
    total = 0
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int((task / "schedstat").read_text().split()[0])
    return total


def tree_pids(root: int) -> list[int]:
    """`root` and its descendants (Linux /proc); empty when `root` is gone."""
    if not Path(f"/proc/{root}").exists():
        return []
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                children.setdefault(int(_stat_fields(int(entry.name))[1]), []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def tree_cpu_ns(proc: Proc) -> int:
    """CPU time of a process and its descendants (workers, children), every thread, in ns."""
    return sum(pid_cpu_ns(pid) for pid in tree_pids(proc.process.pid))


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine from /proc/stat: the other tenants' load included."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields) - idle, sum(fields)


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


def split_cores() -> tuple[set[int], set[int]] | None:
    """The machine's cores cut in two: the first half for the gateways under test, the rest for what stands
    for other machines (the client, the emulators, a stand-in vendor). None with fewer than two cores."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    return set(cpus[: len(cpus) // 2]), set(cpus[len(cpus) // 2 :])


@contextlib.contextmanager
def cores_apart(apart: bool) -> Iterator[set[int] | None]:
    """With `apart` (and two cores or more, `split_cores`): every thread of this process (the bench's client)
    on the second half of the cores while the block runs, so the emulators and vendors it starts inherit them;
    yields the first half, for the gateways under test (`_start(cpus=...)`). Else yields None and moves
    nothing. The cores this process had are given back on the way out."""
    cores = split_cores() if apart else None
    if cores is None:
        yield None
        return
    before = os.sched_getaffinity(0)
    _pin_self(cores[1])
    try:
        yield cores[0]
    finally:
        _pin_self(before)


def _pin_self(cpus: set[int]) -> None:
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():  # Linux affinity is per thread
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(task.name), cpus)


def placement(running: list[Proc]) -> dict[str, list[int]]:
    """Each running process's cores as Linux reports them, and this process's (`client`)."""
    out = {"client": sorted(os.sched_getaffinity(0))}
    for proc in running:
        with contextlib.suppress(OSError):
            out[proc.name] = sorted(os.sched_getaffinity(proc.process.pid))
    return out


async def _start(name: str, argv: list[str], env: dict[str, str], port: int, log_dir: Path, http: bool,
                 cpus: set[int] | None = None) -> Proc:
    """`cpus`: the cores the process (and what it starts: workers, children) runs on; this process's when None."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT, env=env,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
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


async def start_emulator(log_dir: Path, *extra: str) -> Proc:
    port = free_port()
    argv = _command("emulate", "--host", HOST, "--port", str(port), *extra)
    return await _start("emulator", argv, _env(), port, log_dir, http=False)


async def start_gateway(emulator_url: str, log_dir: Path, *extra: str, exe: str | None = None) -> Proc:
    """`exe`: another version's `gradium-gateway` to serve (the emulator stays this checkout's)."""
    port = free_port()
    serve = ("serve", "--host", HOST, "--port", str(port), *extra)
    argv = [exe, *serve] if exe else _command(*serve)
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
