"""What `stt_cost.py` and `tts_cost.py` share: a gateway process of its own (`serve --workers 1`) under a
counting tool, and phases of sessions whose counts are read separately.

- `callgrind`: instructions (valgrind, instrumentation off until `control(pid, "-i", "on")`), one dump per
  phase through `callgrind_control`; deterministic up to a fraction of a percent with `PYTHONHASHSEED=0`;
- `cpu`: the process's CPU time (schedstat, every thread, nanoseconds; the system share from the 10 ms
  ticks of /proc/PID/stat) and how often its loop went to sleep (the main thread's voluntary context
  switches); noisy on a shared machine;
- `strace`: system calls by name (`strace -f -c`);
- `cprofile`: Python call counts, the profiler on from SIGUSR1 to SIGUSR2, one `.prof` per phase.

`--concurrency N` runs a phase's sessions N at a time (starts spread over one session), so the gateway's
loop is busy as under load: at 1, every frame lands on a sleeping process (a wake-up, cold caches), and
`cpu` then measures that (~0.3 ms a frame here), not the per-frame cost of a loaded loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import procs

TOOLS = ("callgrind", "cpu", "strace", "cprofile", "opcodes")

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


# `opcodes`: Python bytecodes run per function (own, and inclusive of callees), sys.settrace with opcode events
# on from SIGUSR1 to SIGUSR2 (then dumped to COST_DIR/last.opcodes as JSON); ~100x slower than Python. The
# report lists 40 functions per frame and OPCODE_ROWS (default 25) per session.
OPCODES_SERVE = """
import json, os, signal, sys
from collections import Counter
from gateway.cli import main
own, incl, calls = Counter(), Counter(), Counter()
names = {}
def name(code):
    n = names.get(code)
    if n is None:
        n = names[code] = code.co_filename.split("site-packages/")[-1].split("/gateway/")[-1] + ":" + code.co_qualname
    return n
def tracer(frame, event, arg):
    frame.f_trace_opcodes = True
    if event == "call":
        calls[name(frame.f_code)] += 1
    elif event == "opcode":
        own[name(frame.f_code)] += 1
        seen = set()
        f = frame
        while f is not None:
            k = name(f.f_code)
            if k not in seen:
                incl[k] += 1
                seen.add(k)
            f = f.f_back
    return tracer
def start(*_):
    sys.settrace(tracer)
def stop(*_):
    sys.settrace(None)
    with open(os.path.join(os.environ["COST_DIR"], "last.opcodes"), "w") as f:
        json.dump({"own": own, "incl": incl, "calls": calls}, f)
    own.clear(); incl.clear(); calls.clear()
signal.signal(signal.SIGUSR1, start)
signal.signal(signal.SIGUSR2, stop)
sys.argv[0] = "gradium-gateway"
sys.exit(main())
"""


def add_arguments(ap: argparse.ArgumentParser, label: str) -> None:
    """The options both scripts take (`label`: how a phase's cProfile file is named)."""
    ap.add_argument("--sessions", type=int, default=20, help="sessions per phase")
    ap.add_argument("--concurrency", type=int, default=1,
                    help="sessions at once, starts spread over one session (cpu: measure a loaded loop)")
    ap.add_argument("--log-level", default="warning", help="the gateway's (load.py runs it at warning)")
    ap.add_argument("--annotate", type=Path, help="keep the callgrind dumps (or cProfile files) in this directory")
    ap.add_argument("--tool", choices=TOOLS, default="callgrind",
                    help="cpu: the gateway's process CPU time instead (no valgrind; use more --sessions and "
                    "--concurrency); strace: system calls per session and frame; "
                    f"cprofile: Python call counts per phase in DIR/{label}-PHASE.prof (needs --annotate DIR); "
                    "opcodes: Python bytecodes per frame and function (slow: use few --sessions, a slow --pace-ms)")


def out_dir(args: argparse.Namespace, prefix: str) -> Path:
    """Where dumps go (`--annotate`, else a temporary directory), after checking the tool is there."""
    if args.tool == "callgrind" and (shutil.which("valgrind") is None or shutil.which("callgrind_control") is None):
        raise SystemExit("needs valgrind (callgrind_control)")
    if args.tool == "strace" and shutil.which("strace") is None:
        raise SystemExit("needs strace")
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


def cpu_times(pid: int) -> tuple[float, float, int]:
    """CPU seconds of `pid` so far (every thread, schedstat: exact, where /proc/PID/stat counts 10 ms
    ticks, a resolution of ~14 us a frame over 20 sessions), its system seconds (ticks), and how often its
    main thread slept (voluntary context switches: the event loop waiting in epoll)."""
    run_ns = procs.pid_cpu_ns(pid)
    sleeps = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            sleeps = int(line.split()[1])
    return run_ns / 1e9, int(procs._stat_fields(pid)[12]) / procs._CLK_TCK, sleeps


async def run_sessions(fn: Callable[[], Awaitable[None]], sessions: int, concurrency: int) -> None:
    """`sessions` runs of `fn`, `concurrency` at a time; the workers' first starts are spread over the
    first worker's first session, so their frames interleave rather than arrive in bursts."""
    if concurrency <= 1:
        for _ in range(sessions):
            await fn()
        return
    left = [sessions]
    t0 = time.monotonic()
    await fn()
    left[0] -= 1
    spacing = (time.monotonic() - t0) / concurrency

    async def worker(k: int) -> None:
        await asyncio.sleep(k * spacing)
        while left[0] > 0:
            left[0] -= 1
            await fn()

    await asyncio.gather(*(worker(k) for k in range(concurrency)))


async def strace_counts(pid: int, out: Path, work: Callable[[], Awaitable[None]]) -> dict[str, float]:
    """System calls by name made by `pid` (every thread) while `work` runs."""
    path = out / "strace.txt"
    st = subprocess.Popen(["strace", "-f", "-c", "-o", str(path), "-p", str(pid)], stderr=subprocess.DEVNULL)
    await asyncio.sleep(1.0)  # attached to every thread
    await work()
    await asyncio.sleep(0.5)
    st.send_signal(signal.SIGINT)
    st.wait(30)
    counts: dict[str, float] = {}
    for line in path.read_text().splitlines():
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$", line)
        if m and m.group(2) != "total":
            counts[m.group(2)] = float(m.group(1))
    return counts


async def start_gateway(tool: str, out: Path, emulator_url: str, log_level: str) -> procs.Proc:
    port = procs.free_port()
    argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
            f"--callgrind-out-file={out}/cg.out"] if tool == "callgrind" else []
    serve = {"cprofile": CPROFILE_SERVE, "opcodes": OPCODES_SERVE}.get(tool)
    argv += [sys.executable, "-c", serve] if serve else [sys.executable, "-m", "gateway.cli"]
    argv += ["serve", "--workers", "1", "--host", procs.HOST, "--port", str(port)]
    env = procs._env(GRADIUM_BASE_URL=f"{emulator_url}/api", PYTHONHASHSEED="0", COST_DIR=str(out))
    env["GATEWAY_LOG_LEVEL"] = log_level
    procs.START_TIMEOUT_S = 600.0
    return await procs._start("gateway", argv, env, port, out / "logs", http=True)


async def phase(tool: str, gateway: procs.Proc, out: Path, label: str, fn: Callable[[], Awaitable[None]],
                sessions: int, concurrency: int = 1) -> dict[str, float]:
    """`sessions` runs of `fn`, `concurrency` at a time, counted: {"count": instructions or CPU seconds (0
    for cprofile and strace), "sys": ..., "sleeps": ...} (cpu), {"sys:NAME": calls, ...} (strace)."""
    pid = gateway.process.pid
    if tool == "cpu":
        t0 = cpu_times(pid)
        await run_sessions(fn, sessions, concurrency)
        await asyncio.sleep(0.5)
        t1 = cpu_times(pid)
        return {"count": t1[0] - t0[0], "sys": t1[1] - t0[1], "sleeps": t1[2] - t0[2]}
    if tool == "strace":
        counts = await strace_counts(pid, out, lambda: run_sessions(fn, sessions, concurrency))
        return {"count": 0, **{f"sys:{name}": n for name, n in counts.items()}}
    if tool in ("cprofile", "opcodes"):
        os.kill(pid, signal.SIGUSR1)
        await asyncio.sleep(0.2)
        await run_sessions(fn, sessions, concurrency)
        await asyncio.sleep(0.5 if tool == "cprofile" else 5.0)
        os.kill(pid, signal.SIGUSR2)
        last = out / ("last.prof" if tool == "cprofile" else "last.opcodes")
        for _ in range(100):
            await asyncio.sleep(0.1)
            if last.exists():
                break
        await asyncio.sleep(0.5)
        if tool == "cprofile":
            last.rename(out / f"{label}.prof")
            return {"count": 0}
        counts = json.loads(last.read_text())
        last.unlink()
        return {"count": sum(counts["own"].values()),
                **{f"{kind}:{fn_name}": n for kind, table in counts.items() for fn_name, n in table.items()}}
    control(pid, "-z")
    control(pid, "-i", "on")
    await run_sessions(fn, sessions, concurrency)
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
        # the system time comes in 10 ms ticks, the total exactly: over a short phase the ticks can overshoot
        r["sys_share"] = min(1.0, full["sys"] / max(full["count"], 1e-9))
        r["sleeps_per_frame"] = (full["sleeps"] - empty["sleeps"]) / (sessions * frames)
    for key in full.keys() | empty.keys():
        if key.startswith(("own:", "incl:", "calls:")):
            r[key] = (full.get(key, 0.0) - empty.get(key, 0.0)) / (sessions * frames)
            r["session_" + key] = empty.get(key, 0.0) / sessions
        elif key.startswith("sys:"):
            r[key] = (full.get(key, 0.0) - empty.get(key, 0.0)) / (sessions * frames)  # per frame
            r["session_" + key] = empty.get(key, 0.0) / sessions
    return r


def report(args: argparse.Namespace, results: dict[str, dict[str, float]], out: Path) -> None:
    """Prints the results; removes a temporary `out`."""
    _print(args.tool, args.sessions, args.log_level, results, out, keep=args.annotate is not None,
           concurrency=args.concurrency)
    if args.annotate is None:
        shutil.rmtree(out, ignore_errors=True)


def _print(tool: str, sessions: int, log_level: str, results: dict[str, dict[str, float]], out: Path,
           keep: bool, concurrency: int = 1) -> None:
    if tool == "opcodes":
        print(f"Python bytecodes per frame (sys.settrace), {sessions} sessions per phase, {concurrency} at once")
        for name, r in results.items():
            print(f"{name:8s} per frame {r['per_frame']:7.1f} bytecodes, per session {r['per_session']:8.0f}")
            rows = sorted((k.split(":", 1)[1] for k in r if k.startswith("own:")), key=lambda k: -r["own:" + k])
            print(f"  {'own':>6s} {'incl':>6s} {'calls':>5s}  function (per frame)")
            for k in rows[:40]:
                if r["own:" + k] >= 0.5:
                    print(f"  {r['own:' + k]:6.1f} {r.get('incl:' + k, 0):6.1f} {r.get('calls:' + k, 0):5.2f}  {k}")
            rows = sorted((k.split(":", 1)[1] for k in r if k.startswith("session_own:")),
                          key=lambda k: -r["session_own:" + k])
            print(f"  {'own':>6s} {'incl':>6s} {'calls':>5s}  function (per session with no audio)")
            for k in rows[:int(os.environ.get("OPCODE_ROWS", "25"))]:
                print(f"  {r['session_own:' + k]:6.0f} {r.get('session_incl:' + k, 0):6.0f}"
                      f" {r.get('session_calls:' + k, 0):5.1f}  {k}")
        return
    if tool == "cprofile":
        print(f"profiles: {sorted(str(p) for p in out.glob('*.prof'))} (python -m pstats)")
        return
    if tool == "strace":
        print(f"gateway system calls (strace -f -c), {sessions} sessions per phase, {concurrency} at once")
        for name, r in results.items():
            calls = sorted((k[4:] for k in r if k.startswith("sys:")), key=lambda k: -r["sys:" + k])
            total = sum(r["sys:" + k] for k in calls)
            print(f"{name:8s} per frame {total:5.2f}: " + ", ".join(
                f"{k} {r['sys:' + k]:.2f}" for k in calls if abs(r["sys:" + k]) >= 0.005))
            print(f"{'':8s} per session (no audio) {sum(r['session_sys:' + k] for k in calls):.1f}")
        return
    if tool == "cpu":
        print(f"gateway CPU (schedstat, all threads), {sessions} sessions per phase, {concurrency} at once, "
              f"log level {log_level}, load average {os.getloadavg()[0]:.1f}")
        for name, r in results.items():
            print(f"{name:8s} per session {r['per_session'] * 1e3:6.2f} ms   per frame {r['per_frame'] * 1e6:6.1f} us"
                  f"   whole session ({r['frames']} frames) {r['full_session'] * 1e3:6.2f} ms"
                  f" ({r['sys_share']:.0%} system; loop sleeps per frame {r['sleeps_per_frame']:.2f})")
        return
    print(f"gateway instructions (callgrind), {sessions} sessions per phase, log level {log_level}")
    for name, r in results.items():
        print(f"{name:8s} per session {r['per_session'] / 1e6:7.2f} M   per frame {r['per_frame'] / 1e3:7.1f} k"
              f"   whole session ({r['frames']} frames) {r['full_session'] / 1e6:7.2f} M")
    if keep:
        print(f"dumps: {sorted(str(p) for p in out.glob('*.cg'))}")
