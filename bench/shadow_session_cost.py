"""The whole serving-process cost of a shadowed session, from a gateway process of its own (issue 10).

    python bench/shadow_session_cost.py                       # callgrind, 20 sessions per rate (minutes)
    python bench/shadow_session_cost.py --tool cpu --sessions 200   # schedstat CPU ms instead (noisier)
    python bench/shadow_session_cost.py --annotate /tmp/sc    # keep the dumps (callgrind_annotate)

`bench/traffic.py --shadow`'s TTS row, as instructions: the ElevenLabs stream-input session of
`paths.tts_ws_gateway` against a gateway configured as `traffic.py`'s `shadow_cfg(rate)` (Gradium primary, a
legacy shadow leg to a stand-in vendor: another gateway on its own emulator, niced), one gateway per rate,
each `serve --workers 1` under `valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes`.
After warm-up sessions (imports, pools, the comparator child's start), instrumentation is on for `--sessions`
sequential sessions and until their pairs are in the store (read from the SQLite file by this script, so
the wait costs the gateway nothing), then dumped. Per thread: `main` is the event loop (primaries, shadow
legs, trace recording); the others are the recorder (pair building, hand-off to the comparator child), the
store writer and the process pool's manager. The comparator child is another process (valgrind does not
follow it): it is not counted, as it runs at nice 10 beside the server.

Instruction counts are deterministic to a fraction of a percent (`PYTHONHASHSEED=0`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import paths
import procs
import traffic
from paths import TtsInput

ROOT = Path(__file__).resolve().parent.parent


async def start(name: str, emulator_url: str, config: dict[str, Any], out: Path, tool: str) -> procs.Proc:
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    port = procs.free_port()
    argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes",
            f"--callgrind-out-file={out}/{name}.cg"] if tool == "callgrind" else []
    argv += [sys.executable, *([__file__, "--profiled-gateway"] if tool == "profile" else ["-m", "gateway.cli"]),
             "serve", "--workers", "1", "--host", procs.HOST, "--port", str(port)]
    env = procs._env(PROF_OUT=str(out / f"{name}.prof"), GRADIUM_BASE_URL=f"{emulator_url}/api",
                     GATEWAY_CONFIG=str(path), PYTHONHASHSEED="0",
                     PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return await procs._start(name, argv, env, port, out / "logs", http=True)


def stored(db: Path) -> dict[str, int]:
    """Pairs in the store by outcome (the store commits once a second)."""
    if not db.exists():
        return {}
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        try:
            return dict(conn.execute("SELECT outcome, count(*) FROM shadow_pairs GROUP BY outcome").fetchall())
        except sqlite3.OperationalError:
            return {}


async def settle(db: Path | None, want: int, timeout_s: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout_s
    got: dict[str, int] = {}
    while time.monotonic() < deadline:
        if db is None:
            await asyncio.sleep(0.5)  # rate 0: only the last session's close and log line
            return got
        got = stored(db)
        if sum(got.values()) >= want:
            await asyncio.sleep(0.5)  # the row's log line and metrics after the store's commit
            return got
        await asyncio.sleep(0.5)
    return got


def own_cpu_ns(pid: int) -> dict[str, int]:
    """CPU ns per thread of `pid` itself (`main`: the event loop; not its children: the comparator child is
    another process)."""
    out: dict[str, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            name = "main" if int(task.name) == pid else f"t{task.name}"
            out[name] = int((task / "schedstat").read_text().split()[0])
    return out


def children_cpu_ns(pid: int) -> int:
    return sum(procs.pid_cpu_ns(child) for child in procs.tree_pids(pid)[1:])


def control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True, timeout=600)


def thread_totals(out: Path, name: str, phase: str) -> dict[int, int]:
    """Instructions per thread number of the dump `phase` (`--separate-threads`: one file per thread)."""
    totals: dict[int, int] = {}
    for dump in out.glob(f"{name}.cg.*"):
        if "-" not in dump.name.rsplit(".", 1)[-1]:
            continue
        text = dump.read_text(errors="replace")
        if f"Trigger: dump {phase}" not in text:
            continue
        thread = next((int(line.split()[1]) for line in text.splitlines() if line.startswith("thread:")), 0)
        total = next((int(line.split()[1]) for line in text.splitlines() if line.startswith("totals:")), 0)
        totals[thread] = totals.get(thread, 0) + total
        final = out / f"{name}-{phase}-t{thread:02d}.cg"
        dump.rename(final)
    return totals


async def measure(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    log_dir = out / "logs"
    emulator = await procs.start_emulator(log_dir)
    running = [emulator]
    results: dict[str, Any] = {}
    procs.START_TIMEOUT_S = 900.0
    try:
        _vendor, legacy = await traffic.start_vendor(log_dir, running)
        tts = TtsInput.build("The quick brown fox jumps over the lazy dog.")
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            for rate in args.rates:
                name = f"rate{rate:g}"
                db = out / f"{name}.db"
                gw = await start(name, emulator.url, traffic.shadow_cfg(rate, legacy, db), out, args.tool)
                running.append(gw)
                pid = gw.process.pid
                session = functools.partial(paths.tts_ws_gateway, http, gw.url, tts)
                for _ in range(args.warmup):
                    await asyncio.wait_for(session(paths.new_trace()), 600)
                    await asyncio.sleep(args.pause)
                await settle(db if rate else None, args.warmup, 600)
                before = stored(db)
                if args.tool == "profile":
                    os.kill(pid, signal.SIGUSR1)
                if args.tool in ("cpu", "profile"):
                    t0, c0 = own_cpu_ns(pid), children_cpu_ns(pid)
                else:
                    control(pid, "-z")
                    control(pid, "-i", "on")
                for _ in range(args.sessions):
                    await asyncio.wait_for(session(paths.new_trace()), 600)
                    await asyncio.sleep(args.pause)
                got = await settle(db if rate else None, sum(before.values()) + args.sessions, 900)
                outcomes = {k: v - before.get(k, 0) for k, v in got.items() if v - before.get(k, 0)}
                if args.tool == "profile":
                    os.kill(pid, signal.SIGUSR2)
                    await asyncio.sleep(1)
                    results[name + " profile"] = str(out / f"{name}.prof")
                if args.tool in ("cpu", "profile"):
                    t1, c1 = own_cpu_ns(pid), children_cpu_ns(pid)
                    threads = {k: (v - t0.get(k, 0)) / 1e6 / args.sessions for k, v in t1.items()
                               if v - t0.get(k, 0)}
                    results[name] = {"threads_ms": threads, "total_ms": sum(threads.values()),
                                     "children_ms": (c1 - c0) / 1e6 / args.sessions, "pairs": outcomes}
                else:
                    control(pid, "-i", "off")
                    control(pid, "-d", "measured")
                    await asyncio.sleep(1)
                    per = {t: n / args.sessions for t, n in thread_totals(out, name, "measured").items()}
                    results[name] = {"threads": per, "total": sum(per.values()), "pairs": outcomes}
                await procs.stop(gw)
                running.remove(gw)
    finally:
        for proc in running:
            await procs.stop(proc)
    return results


def profiled_gateway(argv: list[str]) -> None:
    """`gradium-gateway` with a cProfile of its main thread (the event loop), on at SIGUSR1, off and dumped to
    $PROF_OUT at SIGUSR2."""
    import cProfile

    from gateway.cli import main as cli

    prof = cProfile.Profile()
    signal.signal(signal.SIGUSR1, lambda *_: prof.enable())
    signal.signal(signal.SIGUSR2, lambda *_: (prof.disable(), prof.dump_stats(os.environ["PROF_OUT"])))
    sys.exit(cli(argv))


def main() -> None:
    if sys.argv[1:2] == ["--profiled-gateway"]:
        return profiled_gateway(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=20, help="measured sessions per rate")
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--pause", type=float, default=0.3, help="s between sessions (a leg drains meanwhile)")
    ap.add_argument("--rates", default="0,1")
    ap.add_argument("--tool", choices=["callgrind", "cpu", "profile"],
                    help="profile: cProfile of the event loop's thread, in CPU ms per session", default="callgrind")
    ap.add_argument("--annotate", type=Path, help="keep the dumps and logs in this directory")
    args = ap.parse_args()
    args.rates = [float(r) for r in args.rates.split(",")]
    if args.tool == "callgrind" and shutil.which("callgrind_control") is None:
        raise SystemExit("needs valgrind (callgrind_control)")
    out = args.annotate or Path(tempfile.mkdtemp(prefix="shadow_session_cost-"))
    out.mkdir(parents=True, exist_ok=True)
    results = asyncio.run(measure(args, out))
    unit = "CPU ms" if args.tool != "callgrind" else "M instructions"
    print(f"serving process, per session ({args.sessions} sessions per rate; {unit}; comparator child apart)")
    for name, r in results.items():
        if isinstance(r, str):
            print(f"{name}: {r}")
        elif args.tool != "callgrind":
            threads = "  ".join(f"{k} {v:.2f}" for k, v in sorted(r["threads_ms"].items()))
            print(f"{name}: total {r['total_ms']:.2f} ms  [{threads}]  comparator child {r['children_ms']:.2f} ms"
                  f"  pairs {r['pairs']}")
        else:
            threads = "  ".join(f"t{k} {v / 1e6:.2f}" for k, v in sorted(r["threads"].items()))
            print(f"{name}: total {r['total'] / 1e6:.2f} M  [{threads}]  pairs {r['pairs']}")
    if args.annotate is None:
        shutil.rmtree(out, ignore_errors=True)
    else:
        print(f"dumps and logs: {out}")


if __name__ == "__main__":
    main()
