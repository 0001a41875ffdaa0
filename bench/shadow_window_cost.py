"""The CPU a gateway spends inside its primaries' windows, shadow rate 1 against rate 0 (issue 10).

    python bench/shadow_window_cost.py                  # 2 workers per gateway, 150 sessions per rate
    python bench/shadow_window_cost.py --workers 1 --sessions 300 --keep /tmp/win

`bench/traffic.py --shadow`'s TTS row (ElevenLabs stream-input, Gradium primary, a legacy shadow leg to a
stand-in vendor in Linux's idle scheduling class), same schedule: sessions one at a time, alternating a, b,
b, a between the two gateways, 20 ms apart. Each gateway process runs `bench/window_probe.py` (through a
`sitecustomize` on its PYTHONPATH): per primary session, from its upgrade request's first bytes to its first
output, the CPU time of the event loop's thread, of the whole process, of the sibling workers, and the share
of the loop's time that ran shadow work (leg task steps, vendor-socket callbacks, shadow/trace addon hooks,
GC by generation).

With `--keep DIR`, `DIR/<rate>/<pid>.json` has each worker's windows and its collections per generation
(`gc_all`, also in the summary); `WINDOW_PROBE_GCDUMP=1 python bench/shadow_window_cost.py --keep DIR` adds
what the young generation held at each collection (`gcdump`: object counts by type, the largest containers).

CPU time is what each process spent whatever else the machine ran; which work falls inside a window still
depends on timing (a slow machine leaves more of the previous session's shadow work for the next window), so
compare rates within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import paths
import procs
import traffic
from paths import TtsInput

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SITE = """import os, sys
if os.environ.get("WINDOW_PROBE_DIR"):
    try:
        import window_probe
        window_probe.install()
    except Exception as exc:  # the gateway still serves; the run reports no windows
        sys.stderr.write(f"window_probe: {exc!r}\\n")
"""


async def start(name: str, emulator_url: str, config: dict[str, Any], out: Path, workers: int,
                vendor_port: int, cpus: set[int] | None) -> procs.Proc:
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    probe_dir = out / name
    probe_dir.mkdir()
    port = procs.free_port()
    argv = procs._command("serve", "--host", procs.HOST, "--port", str(port), "--workers", str(workers))
    env = procs._env(GRADIUM_BASE_URL=f"{emulator_url}/api", GATEWAY_CONFIG=str(path), WINDOW_PROBE_DIR=str(probe_dir),
                     WINDOW_PROBE_VENDOR_PORT=str(vendor_port),
                     PYTHONPATH=os.pathsep.join([str(out / "site"), str(HERE), str(ROOT),
                                                 os.environ.get("PYTHONPATH", "")]))
    return await procs._start(name, argv, env, port, out / "logs", http=True, cpus=cpus)


def workers_of(proc: procs.Proc, count: int) -> list[int]:
    """The serving processes: the gateway itself with one worker, else its direct children (not the
    comparator's forkserver and child, which the workers started)."""
    root = proc.process.pid
    if count == 1:
        return [root]
    kids = Path(f"/proc/{root}/task/{root}/children").read_text().split()
    return [int(k) for k in kids]


def collect(probe_dir: Path, pids: list[int], since: float) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The windows opened after `since` in these workers, and each worker's collections over the run."""
    windows = []
    gc_all: dict[str, Any] = {}
    for pid in pids:
        data = json.loads((probe_dir / f"{pid}.json").read_text())
        gc_all[f"{probe_dir.name}:{pid}"] = data.get("gc_all", {})
        for w in data["windows"]:
            if w["t0"] >= since:
                w["pid"] = pid
                windows.append(w)
    return sorted(windows, key=lambda w: w["t0"]), gc_all


def summary(windows: list[dict[str, Any]]) -> dict[str, Any]:
    def ms(key: str) -> np.ndarray:
        return np.asarray([w.get(key, 0) for w in windows], dtype=float) / 1e6

    out: dict[str, Any] = {"n": len(windows)}
    thread = ms("thread_ns")
    for key in ("thread_ns", "proc_ns", "sib_ns"):
        a = ms(key)
        out[key[:-3]] = {"mean": round(a.mean(), 3), "p50": round(float(np.percentile(a, 50)), 3),
                         "p99": round(float(np.percentile(a, 99)), 3), "max": round(a.max(), 3)}
    out["other_threads_mean"] = round(float((ms("proc_ns") - thread).mean()), 3)
    parts = sorted({k[:-3] for w in windows for k in w if k.endswith("_ns") and k[:-3] not in
                    ("thread", "proc", "sib")})
    for part in parts:
        a = ms(part + "_ns")
        hit = int((a > 0).sum())
        calls = sum(w.get(part + "_n", 0) for w in windows)
        out[part] = {"windows_hit": hit, "calls": calls, "mean_ms": round(a.mean(), 4),
                     "max_ms": round(a.max(), 3)}
    out["overlapping_starts"] = sum(w.get("overlap", 0) for w in windows)
    return out


SEGMENTS = ("to_gateway", "to_gradium_audio", "gateway_out", "to_client")


def segments(windows: list[dict[str, Any]], client: list[tuple[float, float, float]]) -> dict[str, Any]:
    """Each session's time to first audio cut where it was spent, on the one monotonic clock of the machine:
    the client's first message reaching the gateway (`to_gateway`), from there to Gradium's first audio
    reaching the gateway (forwarding, Gradium's own time: `to_gradium_audio`), the gateway writing it to
    the client (`gateway_out`), and the client reading it (`to_client`). `client` holds the bench's
    (start, connect ms, ttfa ms) per session; the window whose upgrade falls between start and connect is
    that session's. Percentiles per segment, and each segment's median in the slowest tenth of sessions."""
    by_t0 = sorted((w for w in windows if len(w.get("client_rx_t", ())) > 1 and w.get("gradium_t")),
                   key=lambda w: w["t0"])
    starts = [w["t0"] for w in by_t0]
    rows = []
    for start, connect_ms, ttfa_ms in client:
        i = bisect.bisect_left(starts, start)
        t_text = start + connect_ms / 1e3
        if i == len(by_t0) or by_t0[i]["t0"] > t_text:
            continue
        w = by_t0[i]
        frame = w["t0"] + w["client_rx_t"][1]  # the bytes after the upgrade request's: the first message
        audio = max(w["t0"] + t for t in w["gradium_t"] if w["t0"] + t <= w["t1"])  # what the first output carried
        rows.append((ttfa_ms, (frame - t_text) * 1e3, (audio - frame) * 1e3, (w["t1"] - audio) * 1e3,
                     (t_text + ttfa_ms / 1e3 - w["t1"]) * 1e3))
    if not rows:
        return {"n": 0}
    a = np.asarray(rows)
    slow = a[a[:, 0] >= np.percentile(a[:, 0], 90)]
    out: dict[str, Any] = {"n": len(rows)}
    for k, name in enumerate(SEGMENTS, start=1):
        out[name] = {q: round(float(np.percentile(a[:, k], int(q[1:]))), 3) for q in ("p50", "p90", "p99")}
        out[name]["slowest_tenth_p50"] = round(float(np.median(slow[:, k])), 3)
    return out


async def measure(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    with procs.cores_apart(args.apart) as cpus:  # as traffic.bench_traffic
        return await _measure(args, out, cpus)


async def _measure(args: argparse.Namespace, out: Path, cpus: set[int] | None) -> dict[str, Any]:
    (out / "site").mkdir(parents=True, exist_ok=True)
    (out / "site" / "sitecustomize.py").write_text(SITE)
    log_dir = out / "logs"
    running: list[procs.Proc] = []
    try:
        emulator = await procs.start_emulator(log_dir)
        running.append(emulator)
        vendor, legacy = await traffic.start_vendor(log_dir, running)

        gws = {}
        for rate in (0, 1):
            config = traffic.shadow_cfg(rate, legacy, out / f"rate{rate}.db")
            gws[f"rate{rate}"] = await start(f"rate{rate}", emulator.url, config, out, args.workers, vendor.port,
                                             cpus)
            running.append(gws[f"rate{rate}"])
        tts = TtsInput.build("The quick brown fox jumps over the lazy dog.")
        ttfa: dict[str, list[float]] = {k: [] for k in gws}
        client: dict[str, list[tuple[float, float, float]]] = {k: [] for k in gws}  # start, connect, ttfa
        since = 0.0
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            order = list(gws.items())
            for i in range(args.warmup + args.sessions):
                if i == args.warmup:
                    await asyncio.sleep(0.5)
                    since = time.monotonic()
                for name, gw in order if i % 2 == 0 else order[::-1]:
                    t_start = time.monotonic()
                    sample = await asyncio.wait_for(paths.tts_ws_gateway(http, gw.url, tts, paths.new_trace()), 30)
                    if i >= args.warmup:
                        ttfa[name].append(sample["ttfa_ms"])
                        client[name].append((t_start, sample["connect_ms"], sample["ttfa_ms"]))
                    await asyncio.sleep(0.02)
        await asyncio.sleep(1.0)
        results: dict[str, Any] = {"placement": procs.placement(running)}
        for name, gw in gws.items():
            pids = workers_of(gw, args.workers)
            for pid in pids:
                os.kill(pid, signal.SIGUSR1)
            await asyncio.sleep(1.0)
            windows, gc_all = collect(out / name, pids, since)
            (out / f"{name}.windows.json").write_text(json.dumps(windows))
            (out / f"{name}.client.json").write_text(json.dumps(client[name]))
            results[name] = summary(windows)
            results[name]["gc_all"] = gc_all
            a = np.asarray(ttfa[name])
            results[name]["ttfa_wall_ms"] = {"p50": round(float(np.percentile(a, 50)), 3),
                                             "p99": round(float(np.percentile(a, 99)), 3)}
            results[name]["ttfa_segments_ms"] = segments(windows, client[name])
        return results
    finally:
        for proc in running:
            await procs.stop(proc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=150, help="measured sessions per rate")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--apart", action="store_true",
                    help="the gateways on half the cores, everything else on the rest (as bench/run.py --apart)")
    ap.add_argument("--keep", type=Path, help="keep the windows (JSON per rate) and logs in this directory")
    args = ap.parse_args()
    out = args.keep or Path(tempfile.mkdtemp(prefix="shadow_window_cost-"))
    out.mkdir(parents=True, exist_ok=True)
    results = asyncio.run(measure(args, out))
    print(f"CPU ms inside primaries' windows (upgrade request -> first output), {args.sessions} sessions per rate,"
          f" {args.workers} worker(s); wall-clock ttfa for reference only")
    print(json.dumps(results, indent=1))
    print(f"windows and logs: {out}")


if __name__ == "__main__":
    main()
