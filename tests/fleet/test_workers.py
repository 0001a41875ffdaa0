"""`serve --workers N` as operators run it: real processes sharing one port, metrics summed, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from gateway.workers import Supervisor, listen_sockets
from tests.emulator.helpers import wav_bytes
from tests.fleet.procs import Proc, children, clean_env, free_port, start, wait_ready, wait_workers

TTS = "/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM/stream?output_format=pcm_16000"


async def _tts(http: aiohttp.ClientSession, base: str, text: str = "hello workers") -> bytes:
    async with http.post(base + TTS, json={"text": text}, headers={"xi-api-key": "k"}) as r:
        assert r.status == 200, await r.text()
        return await r.read()


async def _mint(http: aiohttp.ClientSession, base: str) -> str:
    async with http.post(f"{base}/v1/single-use-token/batch_scribe", headers={"xi-api-key": "k"}) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["token"])


async def _transcribe(http: aiohttp.ClientSession, base: str, token: str) -> int:
    form = aiohttp.FormData()
    form.add_field("model_id", "scribe_v1")
    form.add_field("file", wav_bytes("hello", 16000), filename="a.wav", content_type="audio/wav")
    async with http.post(f"{base}/v1/speech-to-text?token={token}", data=form) as r:
        await r.read()
        return r.status


def _requests_by(pid: int, tmp_path: Path) -> float:
    """Requests one worker counted, read from its own prometheus-client multiprocess files."""
    env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    metrics_dir = Path(next(e for e in env if e.startswith(b"PROMETHEUS_MULTIPROC_DIR=")).split(b"=", 1)[1].decode())
    only = tmp_path / f"metrics-{pid}"
    only.mkdir()
    for f in metrics_dir.glob(f"*_{pid}.db"):
        shutil.copy(f, only / f.name)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(only))
    return _requests_total(generate_latest(registry).decode())


def _requests_total(metrics: str) -> float:
    return sum(float(v) for v in re.findall(r'^gateway_requests_total\{[^}]*status="200"[^}]*\} (\S+)$', metrics, re.M))


async def test_two_workers_share_the_port_and_metrics_add_up(tmp_path: Path) -> None:
    gw = start(["serve", "--workers", "2"], clean_env(), tmp_path / "gw.log")
    try:
        await wait_workers(gw, 2)
        await wait_ready(gw)
        workers = children(gw.popen.pid)
        assert len(workers) == 2, gw.output()
        # the supervisor stays small: the app, its codecs and numpy are imported by the workers alone
        assert not _loaded(gw.popen.pid) and all(_loaded(pid) for pid in workers)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            bodies = await asyncio.gather(*(_tts(http, gw.url) for _ in range(30)))
            assert all(bodies)
            async with http.get(gw.url + "/metrics") as r:
                metrics = await r.text()
        assert _requests_total(metrics) == 30, metrics  # whichever worker answers, it reports all of them
        # Tokens minted by one worker verify on the other: the supervisor gave them one secret.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            tokens = [await _mint(http, gw.url) for _ in range(8)]
            assert [await _transcribe(http, gw.url, t) for t in tokens] == [200] * 8
        # Both workers served some of them (the kernel spreads connections over the SO_REUSEPORT sockets).
        served = {pid: _requests_by(pid, tmp_path) for pid in workers}
        assert all(served.values()) and sum(served.values()) == 30 + 8 + 8, served  # TTS, mints, transcripts

        # A worker that dies is replaced, on the same port.
        os.kill(workers[0], signal.SIGKILL)
        for _ in range(100):
            now = children(gw.popen.pid)
            if len(now) == 2 and workers[0] not in now:
                break
            await asyncio.sleep(0.1)
        assert len(children(gw.popen.pid)) == 2 and workers[0] not in children(gw.popen.pid)
        await wait_workers(gw, 3)  # the replacement is listening too
        await wait_ready(gw)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            assert all(await asyncio.gather(*(_tts(http, gw.url) for _ in range(10))))
    finally:
        code = gw.stop()
    out = gw.output()
    assert code == 0, out
    first = out.splitlines()[0]
    assert "gateway.using_builtin_emulator" in first  # still the first line with workers
    assert "gateway.workers_without_shared_state" in out and "gateway.worker_restarted" in out
    # each worker froze its start-up heap before serving (gateway/heap.py): full collections skip it
    frozen = [int(n) for n in re.findall(r'"frozen_objects": ?(\d+)', out)]
    assert len(frozen) == 3 and min(frozen) > 10_000, frozen


async def test_sigterm_drains_running_requests_on_every_worker(tmp_path: Path) -> None:
    # A provider paced at real time, so requests are still running when the signal comes.
    emu = start(["emulate", "--tts-speed", "1"], clean_env(), tmp_path / "emu.log")
    gw: Proc | None = None
    try:
        await wait_ready(emu, "/_emulator/stats")
        env = clean_env(GRADIUM_BASE_URL=f"{emu.url}/api")
        gw = start(["serve", "--workers", "2"], env, tmp_path / "gw.log")
        await wait_workers(gw, 2)
        await wait_ready(gw)
        text = "one two three four five six seven eight"  # a few seconds of audio
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            running = [asyncio.create_task(_tts(http, gw.url, text)) for _ in range(6)]
            await asyncio.sleep(1.0)
            assert not any(t.done() for t in running)
            gw.popen.send_signal(signal.SIGTERM)
            bodies = await asyncio.wait_for(asyncio.gather(*running), 60)
        pcm_s = [len(b) / 32000 for b in bodies]
        assert min(pcm_s) > 2.0, pcm_s  # every stream completed, none was cut at the signal
        assert await asyncio.to_thread(gw.popen.wait, 60) == 0, gw.output()
    finally:
        if gw is not None:
            gw.stop()
        emu.stop()


def _loaded(pid: int) -> bool:
    """Has process `pid` loaded the app's heavy shared objects (FFmpeg's codecs, numpy's core)?"""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return "libavcodec" in maps and "_multiarray_umath" in maps


def test_invalid_mappings_stop_serve_before_any_worker_starts(tmp_path: Path) -> None:
    from gateway.config import PACKAGE_MAPPINGS

    maps = tmp_path / "mappings"
    shutil.copytree(PACKAGE_MAPPINGS, maps)
    with (maps / "deepgram.yaml").open("a") as f:
        f.write("\nbogus_key: 1\n")
    lines = (maps / "deepgram.yaml").read_text().count("\n")
    r = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--workers", "2", "--port", "0"],
                       env=clean_env(GATEWAY_MAPPINGS=str(maps)), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r
    # said once, by the child that checked them, with the file and line; no worker was started
    assert r.stderr.count("invalid mappings") == 1, r.stderr
    assert f"{maps / 'deepgram.yaml'}:{lines}: bogus_key: Extra inputs are not permitted" in r.stderr, r.stderr
    assert "gateway.workers" not in r.stdout + r.stderr


def test_workers_flag_is_checked() -> None:
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--workers", "0"], env=clean_env(),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--workers must be between 1 and 256" in r.stderr


def test_a_worker_stopped_while_still_starting_is_a_clean_stop() -> None:
    """SIGTERM can reach a worker before it installed its handlers (it dies of the signal, -15, having served
    nothing): the supervisor still exits 0, as `docker stop` expects; any other failure is exit 1."""
    def supervisor(*codes_script: str) -> Supervisor:
        sup = Supervisor(["serve"], [listen_sockets("127.0.0.1", 0, len(codes_script))])
        sup.procs = [subprocess.Popen([sys.executable, "-c", code]) for code in codes_script]
        return sup

    # a worker still importing (no handler: the default action kills it) beside one that drains and exits 0
    starting = "import time; time.sleep(60)"
    draining = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); time.sleep(60)"
    sup = supervisor(starting, draining)
    time.sleep(0.5)  # let the second one install its handler
    assert sup._drain() == 0
    assert [p.returncode for p in sup.procs] == [-signal.SIGTERM, 0]
    failing = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(3)); time.sleep(60)"
    sup = supervisor(failing)
    time.sleep(0.5)
    assert sup._drain() == 1


def _cgroup(tmp_path: Path, line: str, files: dict[str, str]) -> float | None:
    """`cpu_quota_cores` over a fake /proc/self/cgroup (`line`) and cgroup tree (`files`, path -> text)."""
    from gateway.workers import cpu_quota_cores

    tmp_path.mkdir()
    (tmp_path / "self-cgroup").write_text(line + "\n")
    for rel, text in files.items():
        (tmp_path / "fs" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "fs" / rel).write_text(text)
    (tmp_path / "fs").mkdir(exist_ok=True)
    return cpu_quota_cores(tmp_path / "self-cgroup", tmp_path / "fs")


def test_cpu_quota_is_read_from_the_process_cgroup_and_its_parents(tmp_path: Path) -> None:
    # cgroup v2: the pod's limit (a parent) is stricter than the container's own `max`
    assert _cgroup(tmp_path / "a", "0::/kubepods/pod1/c1", {
        "cpu.max": "max 100000", "kubepods/pod1/cpu.max": "150000 100000", "kubepods/pod1/c1/cpu.max": "max 100000",
    }) == 1.5
    # v1, a container that sees its own cgroup at the mount's root under its host path (no cgroup namespace)
    assert _cgroup(tmp_path / "b", "4:cpu,cpuacct:/docker/abc", {
        "cpu/cpu.cfs_quota_us": "200000", "cpu/cpu.cfs_period_us": "100000",
    }) == 2.0
    # no limit anywhere (v1's -1, v2's max), or no cgroup file at all
    assert _cgroup(tmp_path / "c", "1:cpu:/", {"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}) is None
    assert _cgroup(tmp_path / "d", "0::/", {"cpu.max": "max 100000"}) is None
    from gateway.workers import cpu_quota_cores

    assert cpu_quota_cores(tmp_path / "missing", tmp_path) is None


async def test_default_workers_follow_the_cgroups_cpu_limit(tmp_path: Path) -> None:
    """A gateway started in a cgroup capped at one CPU (a container's `--cpus 1`) runs one process, not one
    per core of the machine. A real cgroup: needs root, as creating one does."""
    v2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
    root = Path("/sys/fs/cgroup") if v2 else Path("/sys/fs/cgroup/cpu")
    group = root / f"gradium-test-{os.getpid()}"
    try:
        group.mkdir()
    except OSError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"cannot create a CPU cgroup here ({exc})")
    try:
        if v2:
            (group / "cpu.max").write_text("100000 100000")
        else:
            (group / "cpu.cfs_period_us").write_text("100000")
            (group / "cpu.cfs_quota_us").write_text("100000")
        procs = group / "cgroup.procs"
        port = free_port()
        with (tmp_path / "gw.log").open("w") as log:
            popen = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--port", str(port)],
                                     env=clean_env(), stdout=log, stderr=log, text=True,
                                     preexec_fn=lambda: procs.write_text(str(os.getpid())))
        gw = Proc(popen, port, tmp_path / "gw.log")
        try:
            await wait_ready(gw)
            assert children(popen.pid) == [], gw.output()  # one process: no supervisor, no workers
            assert "gateway.workers" not in gw.output()
        finally:
            assert gw.stop() == 0, gw.output()
    finally:
        group.rmdir()
