"""What `stt_cost.py` and `tts_cost.py` share: a gateway process of its own (`serve --workers 1`) under a
counting tool, and phases of sessions whose counts are read separately.

- `callgrind`: instructions (valgrind, instrumentation off until `control(pid, "-i", "on")`), one dump per
  phase through `callgrind_control`; deterministic up to a fraction of a percent with `PYTHONHASHSEED=0`;
- `cpu`: the process's CPU seconds (user + system, 10 ms ticks), noisy on a shared machine;
- `cprofile`: Python call counts, the profiler on from SIGUSR1 to SIGUSR2, one `.prof` per phase.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import procs

TOOLS = ("callgrind", "cpu", "cprofile")

# `cprofile`: the gateway under cProfile, on from SIGUSR1 to SIGUSR2 (then dumped to COST_DIR/last.prof)
CPROFILE_SERVE = """
import cProfile, os, signal, sys
from gateway.cli import main
prof = cProfile.Profile()
def stop(*_):
    prof.disable()
    prof.dump_stats(os.path.join(os.environ["COST_DIR"], "last.prof"))
    prof.clear()
signal.signal(signal.SIGUSR1, lambda *_: prof.enable())
signal.signal(signal.SIGUSR2, stop)
sys.argv[0] = "gradium-gateway"
sys.exit(main())
"""


def add_arguments(ap: argparse.ArgumentParser, label: str) -> None:
    """The options both scripts take (`label`: how a phase's cProfile file is named)."""
    ap.add_argument("--sessions", type=int, default=20, help="sessions per phase")
    ap.add_argument("--log-level", default="warning", help="the gateway's (load.py runs it at warning)")
    ap.add_argument("--annotate", type=Path, help="keep the callgrind dumps (or cProfile files) in this directory")
    ap.add_argument("--tool", choices=TOOLS, default="callgrind",
                    help="cpu: the gateway's process CPU time instead (no valgrind; use more --sessions); "
                    f"cprofile: Python call counts per phase in DIR/{label}-PHASE.prof (needs --annotate DIR)")


def out_dir(args: argparse.Namespace, prefix: str) -> Path:
    """Where dumps go (`--annotate`, else a temporary directory), after checking the tool is there."""
    if (args.tool == "callgrind" and shutil.which("valgrind") is None) or shutil.which("callgrind_control") is None:
        raise SystemExit("needs valgrind (callgrind_control)")
    if args.tool == "cprofile" and args.annotate is None:
        raise SystemExit("--tool cprofile needs --annotate DIR")
    out = args.annotate or Path(tempfile.mkdtemp(prefix=prefix))
    out.mkdir(parents=True, exist_ok=True)
    return out


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


async def start_gateway(tool: str, out: Path, emulator_url: str, log_level: str) -> procs.Proc:
    port = procs.free_port()
    argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
            f"--callgrind-out-file={out}/cg.out"] if tool == "callgrind" else []
    argv += [sys.executable, "-c", CPROFILE_SERVE] if tool == "cprofile" else [sys.executable, "-m", "gateway.cli"]
    argv += ["serve", "--workers", "1", "--host", procs.HOST, "--port", str(port)]
    env = procs._env(GRADIUM_BASE_URL=f"{emulator_url}/api", PYTHONHASHSEED="0", COST_DIR=str(out))
    env["GATEWAY_LOG_LEVEL"] = log_level
    procs.START_TIMEOUT_S = 600.0
    return await procs._start("gateway", argv, env, port, out / "logs", http=True)


async def phase(tool: str, gateway: procs.Proc, out: Path, label: str, fn: Callable[[], Awaitable[None]],
                sessions: int) -> dict[str, float]:
    """`sessions` runs of `fn`, counted: {"count": instructions or CPU seconds (0 for cprofile), "sys": ...}."""
    pid = gateway.process.pid
    if tool == "cpu":
        t0 = cpu_times(pid)
        for _ in range(sessions):
            await fn()
        await asyncio.sleep(0.5)
        t1 = cpu_times(pid)
        return {"count": round(t1[0] + t1[1] - t0[0] - t0[1], 6), "sys": round(t1[1] - t0[1], 6)}  # whole ticks
    if tool == "cprofile":
        os.kill(pid, signal.SIGUSR1)
        await asyncio.sleep(0.2)
        for _ in range(sessions):
            await fn()
        await asyncio.sleep(0.5)
        os.kill(pid, signal.SIGUSR2)
        await asyncio.sleep(1.0)
        (out / "last.prof").rename(out / f"{label}.prof")
        return {"count": 0}
    control(pid, "-z")
    control(pid, "-i", "on")
    for _ in range(sessions):
        await fn()
    await asyncio.sleep(0.5)  # the last session's close and log line
    control(pid, "-i", "off")
    control(pid, "-d", label)
    dump = max(out.glob("cg.out*"), key=lambda p: p.stat().st_mtime)
    final = out / f"{label}.cg"
    dump.rename(final)
    return {"count": total(final)}


def split(empty: dict[str, float], full: dict[str, float], sessions: int, frames: int) -> dict[str, float]:
    """Per session (the empty phase) and per frame ((full - empty) over the frames of the full phase)."""
    r = {"per_session": empty["count"] / sessions, "per_frame": (full["count"] - empty["count"]) / (sessions * frames),
         "full_session": full["count"] / sessions, "frames": frames}
    if "sys" in full:
        r["sys_share"] = full["sys"] / max(full["count"], 1e-9)
    return r


def report(args: argparse.Namespace, results: dict[str, dict[str, float]], out: Path) -> None:
    """Prints the results; removes a temporary `out`."""
    _print(args.tool, args.sessions, args.log_level, results, out, keep=args.annotate is not None)
    if args.annotate is None:
        shutil.rmtree(out, ignore_errors=True)


def _print(tool: str, sessions: int, log_level: str, results: dict[str, dict[str, float]], out: Path,
           keep: bool) -> None:
    if tool == "cprofile":
        print(f"profiles: {sorted(str(p) for p in out.glob('*.prof'))} (python -m pstats)")
        return
    if tool == "cpu":
        print(f"gateway CPU (process time, 10 ms ticks), {sessions} sessions per phase, "
              f"log level {log_level}, load average {os.getloadavg()[0]:.1f}")
        for name, r in results.items():
            print(f"{name:8s} per session {r['per_session'] * 1e3:6.2f} ms   per frame {r['per_frame'] * 1e6:6.1f} us"
                  f"   whole session ({r['frames']} frames) {r['full_session'] * 1e3:6.2f} ms"
                  f" ({r['sys_share']:.0%} system)")
        return
    print(f"gateway instructions (callgrind), {sessions} sessions per phase, log level {log_level}")
    for name, r in results.items():
        print(f"{name:8s} per session {r['per_session'] / 1e6:7.2f} M   per frame {r['per_frame'] / 1e3:7.1f} k"
              f"   whole session ({r['frames']} frames) {r['full_session'] / 1e6:7.2f} M")
    if keep:
        print(f"dumps: {sorted(str(p) for p in out.glob('*.cg'))}")
