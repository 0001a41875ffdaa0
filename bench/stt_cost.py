"""The gateway's instructions per live STT session and per audio frame, from a gateway process of its own.

    python bench/stt_cost.py                          # dg_live and el_stt, 20 sessions per phase (minutes)
    python bench/stt_cost.py --paths dg_live --sessions 10 --annotate /tmp/cg   # also keep the dumps
    python bench/stt_cost.py --log-level info         # with the per-session log line (the bench: warning)

`bench/load.py`'s STT sessions cost the gateway a few ms of CPU each, most of it per session (handshake,
setup, close, log line), not per frame; `frames.py` counts a whole process (stub and client included).
This runs `gradium-gateway serve --workers 1` under `valgrind --tool=callgrind` (instrumentation off
until the warm-up is over), the emulator (`--stt-replay`, as `load.py` runs it) and the client as other
processes, then, per path, two phases whose instructions are dumped separately (`callgrind_control`):

- `empty`: sessions with no audio (Deepgram: connect, `CloseStream`; ElevenLabs: connect, a commit
  without audio, `committed_transcript`): the per-session cost;
- `full`: `load.py`'s sessions (the same audio and code), paced at `--pace-ms` per 80 ms frame instead
  of 80 ms (valgrind slows the gateway ~50x; every frame still arrives on its own): per frame =
  (full - empty) / frames.

Instruction counts are deterministic up to a fraction of a percent (`PYTHONHASHSEED=0`), so a busy
machine does not move them. `--annotate DIR` keeps the dumps for `callgrind_annotate --inclusive=yes`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load_paths
import paths
import paths_elevenlabs
import procs
from load import STT_TEXT
from paths import SttInput


def sessions(http: aiohttp.ClientSession, base: str) -> dict[str, tuple[Any, Any]]:
    stt = SttInput.build(STT_TEXT)
    rt = paths_elevenlabs.RealtimeInput.build(stt)

    async def dg_full() -> None:
        sample = await paths.stt_gateway(http, base, stt, True, paths.new_trace())
        assert sample["words_ok"] == 1.0, sample

    async def el_full() -> None:
        sample = await paths_elevenlabs.realtime_gateway(http, base, rt, True, paths.new_trace())
        assert sample["words_ok"] == 1.0, sample

    return {"dg_live": (lambda: load_paths.dg_empty(http, base, paths.new_trace()), dg_full),
            "el_stt": (lambda: load_paths.el_empty(http, base, paths.new_trace()), el_full)}


def control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True, timeout=600)


def total(dump: Path) -> int:
    for line in dump.read_text().splitlines():
        if line.startswith("totals:"):  # `summary:` is 0 in a dump asked for by callgrind_control
            return int(line.split()[1])
    raise SystemExit(f"no totals in {dump}")


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of `pid` so far."""
    fields = procs._stat_fields(pid)
    return int(fields[11]) / procs._CLK_TCK, int(fields[12]) / procs._CLK_TCK


async def run(args: argparse.Namespace, out: Path) -> dict[str, dict[str, float]]:
    paths.CHUNK_S = args.pace_ms / 1000  # `_SttRun.send` reads it at every frame
    log_dir = out / "logs"
    emulator = await procs.start_emulator(log_dir, "--stt-replay")
    port = procs.free_port()
    cpu = args.tool == "cpu"
    argv = [] if cpu else ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}/cg.out"]
    argv += [sys.executable, "-m", "gateway.cli", "serve", "--workers", "1", "--host", procs.HOST, "--port", str(port)]
    env = procs._env(GRADIUM_BASE_URL=f"{emulator.url}/api", PYTHONHASHSEED="0")
    env["GATEWAY_LOG_LEVEL"] = args.log_level
    procs.START_TIMEOUT_S = 600.0
    gateway = await procs._start("gateway", argv, env, port, log_dir, http=True)
    pid = gateway.process.pid
    n_frames = len(SttInput.build(STT_TEXT).chunks)
    results: dict[str, dict[str, float]] = {}
    dumps = 0
    try:
        async with aiohttp.ClientSession() as http:
            table = sessions(http, gateway.url)
            for name in args.paths:
                empty, full = table[name]
                for fn in (empty, full, empty, full):  # warm-up: imports, pools, caches (the replay trie)
                    await fn()
                counts: dict[str, float] = {}
                for phase, fn in (("empty", empty), ("full", full)):
                    if cpu:
                        t0 = cpu_times(pid)
                        for _ in range(args.sessions):
                            await fn()
                        await asyncio.sleep(0.5)
                        t1 = cpu_times(pid)
                        counts[phase] = round(t1[0] + t1[1] - t0[0] - t0[1], 6)  # whole ticks: no -1e-17
                        counts[phase + "_sys"] = round(t1[1] - t0[1], 6)
                        continue
                    control(pid, "-z")
                    control(pid, "-i", "on")
                    for _ in range(args.sessions):
                        await fn()
                    await asyncio.sleep(0.5)  # the last session's close and log line
                    control(pid, "-i", "off")
                    control(pid, "-d", f"{name}-{phase}")
                    dumps += 1
                    dump = max(out.glob("cg.out*"), key=lambda p: p.stat().st_mtime)
                    final = out / f"{name}-{phase}.cg"
                    dump.rename(final)
                    counts[phase] = total(final)
                per_session = counts["empty"] / args.sessions
                per_frame = (counts["full"] - counts["empty"]) / (args.sessions * n_frames)
                results[name] = {"per_session": per_session, "per_frame": per_frame,
                                 "full_session": counts["full"] / args.sessions, "frames": n_frames}
                if cpu:
                    results[name]["sys_share"] = counts["full_sys"] / max(counts["full"], 1e-9)
    finally:
        await procs.stop(gateway)
        await procs.stop(emulator)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--paths", default="dg_live,el_stt")
    ap.add_argument("--sessions", type=int, default=20, help="sessions per phase")
    ap.add_argument("--pace-ms", type=float, default=30.0, help="ms between frames (the bench: 80)")
    ap.add_argument("--log-level", default="warning", help="the gateway's (load.py runs it at warning)")
    ap.add_argument("--annotate", type=Path, help="keep the callgrind dumps in this directory")
    ap.add_argument("--tool", choices=["callgrind", "cpu"], default="callgrind",
                    help="cpu: the gateway's process CPU time instead (no valgrind; use more --sessions)")
    args = ap.parse_args()
    args.paths = args.paths.split(",")
    if (args.tool == "callgrind" and shutil.which("valgrind") is None) or shutil.which("callgrind_control") is None:
        raise SystemExit("needs valgrind (callgrind_control)")
    out = args.annotate or Path(tempfile.mkdtemp(prefix="stt_cost-"))
    out.mkdir(parents=True, exist_ok=True)
    results = asyncio.run(run(args, out))
    if args.tool == "cpu":
        print(f"gateway CPU (process time, 10 ms ticks), {args.sessions} sessions per phase, "
              f"log level {args.log_level}, load average {os.getloadavg()[0]:.1f}")
        for name, r in results.items():
            print(f"{name:8s} per session {r['per_session'] * 1e3:6.2f} ms   per frame {r['per_frame'] * 1e6:6.1f} us"
                  f"   whole session ({r['frames']} frames) {r['full_session'] * 1e3:6.2f} ms"
                  f" ({r['sys_share']:.0%} system)")
        return
    print(f"gateway instructions (callgrind), {args.sessions} sessions per phase, log level {args.log_level}")
    for name, r in results.items():
        print(f"{name:8s} per session {r['per_session'] / 1e6:7.2f} M   per frame {r['per_frame'] / 1e3:7.1f} k"
              f"   whole session ({r['frames']} frames) {r['full_session'] / 1e6:7.2f} M")
    if args.annotate is None:
        shutil.rmtree(out, ignore_errors=True)
    else:
        print(f"dumps: {sorted(str(p) for p in out.glob('*.cg'))}")


if __name__ == "__main__":
    main()
