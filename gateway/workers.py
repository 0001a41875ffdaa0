"""`serve --workers N`: N gateway processes sharing the listening ports, supervised by the parent.

The parent binds N sockets per port with SO_REUSEPORT (so the kernel spreads new connections over the
workers evenly) and hands socket i to worker i as an inherited file descriptor (`GATEWAY_WORKER_FDS`).
Because the parent keeps its copies, a crashed worker is restarted on the same socket and port 0 works.
Each worker is a plain `gradium-gateway serve` process with its own event loop and Gradium pool.

SIGTERM or SIGINT to the parent drains: the parent closes its socket copies, sends SIGTERM to every
worker (each stops accepting and lets running requests finish, aiohttp's graceful shutdown), waits,
kills what is left after `DRAIN_TIMEOUT_S`, and exits 0 when every worker exited cleanly.

Metrics add up across workers through prometheus-client's multiprocess mode: the parent makes a
directory, every worker writes its samples there (`PROMETHEUS_MULTIPROC_DIR`) and `/metrics` on any
worker reports the sum over all of them (the active-WebSocket gauge is summed over live workers).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import structlog

log = structlog.get_logger("gateway")

WORKER_FDS_ENV = "GATEWAY_WORKER_FDS"  # "http_fd[,tls_fd]", set by the supervisor for a worker
WORKER_INDEX_ENV = "GATEWAY_WORKER_INDEX"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DRAIN_TIMEOUT_S = 70.0  # aiohttp waits up to 60 s for running requests, then the worker exits
RESTARTS_PER_MINUTE = 5
BACKLOG = 1024


def default_workers() -> int:
    """One worker per core this process may use: its CPU affinity, and its cgroup's CPU quota (a container's
    `--cpus`, a pod's CPU limit), rounded up. Affinity alone is the node's cores in a container: 64 workers
    of ~110 MB each on a 64-core node, under a limit of 2 CPUs."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
    quota = cpu_quota_cores()
    return cores if quota is None else max(1, min(cores, math.ceil(quota - 1e-9)))


def cpu_quota_cores(proc_cgroup: Path = Path("/proc/self/cgroup"),
                    root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup, in cores (the strictest of it and its parents), or None
    when there is none: cgroup v2's `cpu.max`, or v1's `cpu.cfs_quota_us` over `cpu.cfs_period_us`."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    quotas: list[float] = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2: one hierarchy, at the root
            base, read = root, _v2_quota
        elif "cpu" in controllers.split(","):
            base = root / "cpu" if (root / "cpu").is_dir() else root / controllers
            read = _v1_quota
        else:
            continue
        here = base / path.lstrip("/")
        if not here.is_dir():  # a container that sees its own cgroup at the mount's root, under its host path
            here = base
        while True:
            if (q := read(here)) is not None:
                quotas.append(q)
            if here == base:
                break
            here = here.parent
    return min(quotas) if quotas else None


def _v2_quota(group: Path) -> float | None:
    try:
        quota, period = (group / "cpu.max").read_text().split()
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def _v1_quota(group: Path) -> float | None:
    try:
        quota = int((group / "cpu.cfs_quota_us").read_text())
        period = int((group / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period


def worker_fds() -> list[int] | None:
    """The inherited listening sockets when this process is a worker, else None."""
    raw = os.environ.get(WORKER_FDS_ENV)
    return [int(fd) for fd in raw.split(",")] if raw else None


def worker_sockets(fds: Sequence[int]) -> list[socket.socket]:
    return [socket.socket(fileno=fd) for fd in fds]


def _bound(host: str, port: int) -> socket.socket:
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(addr)
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def listen_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` listening sockets on one port (the port of the first when `port` is 0)."""
    first = _bound(host, port)
    port = first.getsockname()[1]
    return [first, *(_bound(host, port) for _ in range(count - 1))]


class Supervisor:
    def __init__(self, argv: list[str], listeners: list[list[socket.socket]]) -> None:
        self.argv = argv  # the worker's `gradium-gateway ...` arguments
        self.listeners = listeners  # per port, one socket per worker
        self.count = len(listeners[0])
        self.procs: list[subprocess.Popen[bytes]] = []
        self.restarts: deque[float] = deque()
        self.stopping = False
        self.metrics_dir = tempfile.mkdtemp(prefix="gateway-metrics-")

    def _spawn(self, i: int) -> subprocess.Popen[bytes]:
        fds = [port_socks[i].fileno() for port_socks in self.listeners]
        env = dict(os.environ)
        env.update({WORKER_FDS_ENV: ",".join(map(str, fds)), WORKER_INDEX_ENV: str(i), MULTIPROC_ENV: self.metrics_dir})
        return subprocess.Popen([sys.executable, "-m", "gateway.cli", *self.argv], pass_fds=fds, env=env)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        try:
            self.procs = [self._spawn(i) for i in range(self.count)]
            log.info("gateway.workers", workers=self.count, pids=[p.pid for p in self.procs])
            while not self.stopping:
                if not self._supervise():
                    self._drain()
                    return 1
                time.sleep(0.1)
            return self._drain()
        finally:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def _supervise(self) -> bool:
        """Restart workers that died; False when they die too often to keep going."""
        for i, proc in enumerate(self.procs):
            code = proc.poll()
            if code is None or self.stopping:
                continue
            _mark_dead(proc.pid, self.metrics_dir)
            now = time.monotonic()
            while self.restarts and now - self.restarts[0] > 60:
                self.restarts.popleft()
            if len(self.restarts) >= RESTARTS_PER_MINUTE:
                log.error("gateway.worker_crash_loop", worker=i, exit_code=code, restarts=len(self.restarts))
                return False
            self.restarts.append(now)
            log.warning("gateway.worker_restarted", worker=i, pid=proc.pid, exit_code=code)
            self.procs[i] = self._spawn(i)
        return True

    def _drain(self) -> int:
        # Closing our copies first: once a worker closes its copy the port stops taking connections no
        # worker would accept.
        for port_socks in self.listeners:
            for sock in port_socks:
                sock.close()
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        codes = []
        for proc in self.procs:
            try:
                codes.append(proc.wait(timeout=max(0.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait())
            _mark_dead(proc.pid, self.metrics_dir)
        log.info("gateway.workers_stopped", exit_codes=codes)
        # A worker still importing when the SIGTERM came dies of it (-15) before its handlers exist; it had not
        # started listening (cli.serve installs them first), so nothing was cut off: a clean stop too.
        return 0 if all(c in (0, -signal.SIGTERM) for c in codes) else 1


def _mark_dead(pid: int, metrics_dir: str) -> None:
    from prometheus_client import multiprocess

    with contextlib.suppress(OSError, KeyError):  # no samples written yet
        multiprocess.mark_process_dead(pid, metrics_dir)


def run_workers(argv: list[str], host: str, ports: Sequence[int], count: int) -> int:
    """Bind, start `count` workers running `argv`, supervise until signalled; returns the exit code."""
    listeners = [listen_sockets(host, port, count) for port in ports]
    return Supervisor(argv, listeners).run()
