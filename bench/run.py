"""Benchmark v0: the gateway against the direct path to Gradium (here: the emulator), in one run, as ratios.

    python bench/run.py [--quick] [--concurrency N] [--json PATH]
    python bench/run.py --shadow --passthrough [--quick]     (issue 10: bench/traffic.py)

Starts `gradium-gateway emulate` and `gradium-gateway serve` as separate processes on free loopback
ports, runs every path through the gateway and directly, at concurrency 1 and N, stops both, prints a
table and writes JSON. See bench/README.md for how to read the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import paths
import paths_cartesia
import paths_deepgram
import paths_elevenlabs
import procs
from paths import PathError, Sample, SttInput, Trace, TtsInput
from run_report import failures, render_table

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SessionFn = Callable[[Trace], Awaitable[Sample]]

TTS_TEXT = (
    "The quick brown fox jumps over the lazy dog, then naps in the warm afternoon sun "
    "while the birds sing softly nearby."
)
STT_TEXT = "Hello world, testing the gateway."
SESSION_TIMEOUT_S = 20.0  # per session; paced STT adds the audio duration


@dataclass(frozen=True)
class Plan:
    solo: int  # sequential sessions per side at concurrency 1
    solo_paced: int
    rounds: int  # rounds of N concurrent sessions per side
    rounds_paced: int
    warmup: int  # sequential warm-up sessions per side before measuring
    warm_round: bool  # at concurrency N, also warm up with one round of N sessions (fills connection pools)

    def reps(self, conc: int, paced: bool) -> int:
        if conc == 1:
            return self.solo_paced if paced else self.solo
        return self.rounds_paced if paced else self.rounds


FULL = Plan(solo=40, solo_paced=8, rounds=4, rounds_paced=2, warmup=5, warm_round=True)
QUICK = Plan(solo=10, solo_paced=2, rounds=1, rounds_paced=1, warmup=2, warm_round=False)


@dataclass
class Scenario:
    path: str
    mode: str
    metrics: tuple[str, ...]  # latency metrics shown in the table (all are in the JSON)
    direct: SessionFn
    gateway: SessionFn
    audio_s: float  # audio seconds one session moves, for the aggregate throughput
    paced: bool = False
    warm: tuple[SessionFn, SessionFn] | None = None  # warm-up functions when not the measured ones


@dataclass
class Side:
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)
    skipped: str | None = None


# -- running sessions ----------------------------------------------------------------------------


async def guarded(fn: SessionFn, timeout: float, delay: float = 0.0) -> Sample | str:
    """One session; a failure becomes a string saying what happened, never an exception."""
    trace = paths.new_trace()
    if delay:
        await asyncio.sleep(delay)
    try:
        return await asyncio.wait_for(fn(trace), timeout)
    except TimeoutError:
        return f"timeout after {timeout:.0f}s; last messages: {list(trace)}"
    except PathError as exc:
        return str(exc)
    except aiohttp.WSServerHandshakeError as exc:
        return f"WebSocket handshake refused: HTTP {exc.status} {exc.message}"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}; last messages: {list(trace)}"


def cpu_snapshot(processes: list[procs.Proc]) -> dict[str, float]:
    return {p.name: cpu for p in processes if (cpu := p.cpu_s()) is not None}


async def run_round(
    fn: SessionFn, conc: int, timeout: float, stagger_s: float, side: Side, processes: list[procs.Proc]
) -> None:
    """`conc` sessions at once; paced sessions start `stagger_s` apart, as independent live streams would."""
    cpu0 = cpu_snapshot(processes)
    t0 = time.perf_counter()
    results = await asyncio.gather(*(guarded(fn, timeout, i * stagger_s) for i in range(conc)))
    side.wall_s += time.perf_counter() - t0
    for name, cpu in cpu_snapshot(processes).items():
        side.cpu_s[name] = side.cpu_s.get(name, 0.0) + cpu - cpu0.get(name, cpu)
    for r in results:
        (side.samples if isinstance(r, dict) else side.errors).append(r)  # type: ignore[arg-type]


async def warm_up(fn: SessionFn, conc: int, plan: Plan, timeout: float) -> str | None:
    """Warm the path; returns why it is unusable when every warm-up session failed."""
    results = [await guarded(fn, timeout) for _ in range(plan.warmup)]
    if conc > 1 and plan.warm_round:
        results += await asyncio.gather(*(guarded(fn, timeout) for _ in range(conc)))
    errors = [r for r in results if isinstance(r, str)]
    if errors and len(errors) == len(results):
        return f"every warm-up session failed ({len(errors)}), not measured; first error: {errors[0]}"
    return None


async def measure(
    sc: Scenario, conc: int, plan: Plan, processes: list[procs.Proc], gateway_down: str | None
) -> dict[str, Any]:
    reps = plan.reps(conc, sc.paced)
    stagger_s = paths.CHUNK_S / conc if sc.paced else 0.0
    timeout = SESSION_TIMEOUT_S + (sc.audio_s if sc.paced else 0.0)
    fns = {"direct": sc.direct, "gateway": sc.gateway}
    warm = dict(zip(fns, sc.warm or (sc.direct, sc.gateway), strict=True))
    sides = {name: Side() for name in fns}
    sides["gateway"].skipped = gateway_down
    for name, side in sides.items():
        side.skipped = side.skipped or await warm_up(warm[name], conc, plan, timeout)
    for i in range(reps):
        order = list(fns) if i % 2 == 0 else list(reversed(fns))  # alternate who goes first
        for name in order:
            if not sides[name].skipped:
                await run_round(fns[name], conc, timeout, stagger_s, sides[name], processes)
    result = {"path": sc.path, "mode": sc.mode, "concurrency": conc, "table_metrics": list(sc.metrics)}
    result |= {name: summarize(side, sc.audio_s) for name, side in sides.items()}
    result["compare"] = compare(result["direct"], result["gateway"])
    return result


# -- statistics ----------------------------------------------------------------------------------


def r3(x: float) -> float:
    return round(float(x), 3)


def summarize(side: Side, audio_s: float) -> dict[str, Any]:
    if side.skipped:
        return {"measured": False, "sessions_ok": 0, "sessions_failed": 0, "errors": [side.skipped]}
    n_ok, n_err = len(side.samples), len(side.errors)
    out: dict[str, Any] = {"measured": True, "sessions_ok": n_ok, "sessions_failed": n_err}
    if side.errors:
        out["errors"] = sorted(set(side.errors), key=side.errors.index)[:5]
    if not n_ok:
        return out
    stats = {}
    for key in side.samples[0]:
        values = np.array([s[key] for s in side.samples], dtype=float)
        p50, p95, p99 = np.percentile(values, [50, 95, 99])
        stats[key] = {
            "p50": r3(p50),
            "p95": r3(p95),
            "p99": r3(p99),
            "mean": r3(values.mean()),
            "min": r3(values.min()),
            "max": r3(values.max()),
        }
    out["metrics"] = stats
    out["wall_s"] = r3(side.wall_s)
    out["throughput"] = {
        "sessions_per_s": r3(n_ok / side.wall_s),
        "audio_x_realtime": r3(n_ok * audio_s / side.wall_s),
    }
    if "bytes" in side.samples[0]:
        out["throughput"]["bytes_per_s"] = r3(sum(s["bytes"] for s in side.samples) / side.wall_s)
    out["cpu_ms_per_session"] = {name: r3(cpu * 1e3 / n_ok) for name, cpu in side.cpu_s.items()}
    return out


def compare(direct: dict[str, Any], gateway: dict[str, Any]) -> dict[str, Any]:
    if "metrics" not in direct or "metrics" not in gateway:
        return {}
    out: dict[str, Any] = {}
    for key, d in direct["metrics"].items():
        g = gateway["metrics"].get(key)
        if g is None or not key.endswith("_ms"):
            continue
        out[key] = {
            f"{kind}_{q}": r3(g[q] / d[q] if kind == "ratio" else g[q] - d[q]) if d[q] or kind == "added_ms" else None
            for kind in ("ratio", "added_ms")
            for q in ("p50", "p95", "p99")
        }
    dt, gt = direct["throughput"]["audio_x_realtime"], gateway["throughput"]["audio_x_realtime"]
    out["throughput_ratio"] = r3(gt / dt) if dt else None
    return out


# -- orchestration -------------------------------------------------------------------------------


def versions() -> dict[str, Any]:
    def v(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "machine": platform.machine(),
        "event_loop": type(asyncio.get_running_loop()).__module__,
        "packages": {name: v(name) for name in ("aiohttp", "orjson", "numpy", "uvloop", "gradium-gateway")},
    }


def build_scenarios(
    emu: str, gw: str, http: aiohttp.ClientSession, tts: TtsInput, stt: SttInput, rest_audio_s: float, ws_audio_s: float
) -> list[Scenario]:
    p = functools.partial
    fast = (p(paths.stt_direct, http, emu, stt, False), p(paths.stt_gateway, http, gw, stt, False))
    latency = ("ttfa_ms", "total_ms")
    return [
        Scenario(
            "tts_rest",
            "pcm_48000 passthrough",
            latency,
            p(paths.tts_rest_direct, http, emu, tts),
            p(paths.tts_rest_gateway, http, gw, tts, "pcm_48000"),
            rest_audio_s,
        ),
        Scenario(
            "tts_rest",
            "mp3_44100_128 transcode",
            latency,
            p(paths.tts_rest_direct, http, emu, tts),
            p(paths.tts_rest_gateway, http, gw, tts, "mp3_44100_128"),
            rest_audio_s,
        ),
        Scenario(
            "tts_ws",
            "stream-input pcm_24000",
            latency,
            p(paths.tts_ws_direct, http, emu, tts),
            p(paths.tts_ws_gateway, http, gw, tts),
            ws_audio_s,
        ),
        Scenario("stt_ws", "fast linear16 16k", ("total_ms",), *fast, stt.audio_s),
        Scenario(
            "stt_ws",
            "paced linear16 16k",
            ("first_word_ms", "tail_ms"),
            p(paths.stt_direct, http, emu, stt, True),
            p(paths.stt_gateway, http, gw, stt, True),
            stt.audio_s,
            paced=True,
            warm=fast,
        ),
        *paths_deepgram.scenarios(Scenario, emu, gw, http),
        *paths_elevenlabs.scenarios(Scenario, emu, gw, http, tts, stt, ws_audio_s),
        *paths_cartesia.scenarios(Scenario, emu, gw, http, tts, ws_audio_s),
    ]


async def probe_audio_s(fn: SessionFn, sample_rate: int) -> float:
    """Audio seconds one direct session returns (the reference for throughput)."""
    r = await guarded(fn, SESSION_TIMEOUT_S)
    if isinstance(r, str):
        raise RuntimeError(f"the direct path to the emulator fails, nothing to compare against: {r}")
    return paths.pcm_seconds(r["bytes"], sample_rate)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    plan = QUICK if args.quick else FULL
    started = time.perf_counter()
    emulator = await procs.start_emulator(RESULTS)
    gateway: procs.Proc | None = None
    gateway_start_error: str | None = None
    try:
        gateway = await procs.start_gateway(emulator.url, RESULTS, *(
            ["--workers", str(args.workers)] if args.workers else []), exe=args.gateway_bin)
    except procs.StartError as exc:
        gateway_start_error = str(exc)
        print(f"gateway did not start; gateway sides will be recorded as failed:\n{exc}", file=sys.stderr)
    running = [p for p in (emulator, gateway) if p is not None]
    results: list[dict[str, Any]] = []
    try:
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            tts, stt = TtsInput.build(TTS_TEXT), SttInput.build(STT_TEXT)
            rest_audio_s = await probe_audio_s(functools.partial(paths.tts_rest_direct, http, emulator.url, tts), 48000)
            ws_audio_s = await probe_audio_s(functools.partial(paths.tts_ws_direct, http, emulator.url, tts), 24000)
            gw_url = gateway.url if gateway else ""
            gateway_down = f"gateway not running: {gateway_start_error}" if gateway_start_error else None
            for sc in build_scenarios(emulator.url, gw_url, http, tts, stt, rest_audio_s, ws_audio_s):
                for conc in dict.fromkeys((1, args.concurrency)):
                    t0 = time.perf_counter()
                    result = await measure(sc, conc, plan, running, gateway_down)
                    results.append(result)
                    print(f"  {sc.path} {sc.mode} x{conc}: {time.perf_counter() - t0:.1f}s", file=sys.stderr)
            meta = versions()
    finally:
        codes = {p.name: p.alive() for p in running}
        exits = {p.name: await procs.stop(p) for p in running}
    processes: dict[str, Any] = {
        p.name: {"alive_at_end": codes[p.name], "exit_code": exits[p.name], "log": str(p.log_path)} for p in running
    }
    for p in running:
        if not codes[p.name]:
            processes[p.name]["log_tail"] = p.log_tail()
    if gateway_start_error:
        processes["gateway"] = {"start_error": gateway_start_error}
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": r3(time.perf_counter() - started),
        "client": meta,
        "config": {
            "quick": args.quick,
            "concurrency": args.concurrency,
            "plan": plan.__dict__,
            "session_timeout_s": SESSION_TIMEOUT_S,
            "tts_text": TTS_TEXT,
            "stt_text": STT_TEXT,
            "stt_audio_s": r3(stt.audio_s),
            "tts_rest_audio_s": r3(rest_audio_s),
            "tts_ws_audio_s": r3(ws_audio_s),
        },
        "processes": processes,
        "results": results,
        "failures": failures(results),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions; well under a minute")
    parser.add_argument("--concurrency", type=int, default=50, help="concurrent sessions for the loaded runs")
    parser.add_argument("--json", type=Path, default=RESULTS / "latest.json", help="where to write the results")
    parser.add_argument("--workers", type=int, default=None,
                        help="pass --workers N to the gateway (default: serve's own, one per core)")
    parser.add_argument("--gateway-bin", default=None, metavar="PATH",
                        help="serve with another version's gradium-gateway executable, on this checkout's emulator "
                             "(to compare versions on one test rig)")
    parser.add_argument("--shadow", action="store_true",
                        help="traffic bench: primary first output with shadow rate 1 vs 0 (TTS socket, Deepgram live)")
    parser.add_argument("--passthrough", action="store_true",
                        help="traffic bench: passthrough (weight 0) vs a direct connection to the stand-in vendor")
    parser.add_argument("--apart", action="store_true",
                        help="traffic bench: the gateways under test on half the cores, the client, emulators and "
                             "stand-in vendor on the other half (default: every process on every core)")
    args = parser.parse_args()
    if args.shadow or args.passthrough:
        import traffic

        traffic.WORKERS[:] = ["--workers", str(args.workers)] if args.workers else []
        out = asyncio.run(traffic.bench_traffic(args.shadow, args.passthrough, args.quick, RESULTS,
                                                args.apart))
        print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
        print(traffic.summary(out))
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.with_name("traffic.json").write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2))
        return 0
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    try:
        import uvloop

        run: Callable[[Awaitable[dict[str, Any]]], dict[str, Any]] = uvloop.run  # type: ignore[assignment]
    except ImportError:
        run = asyncio.run  # type: ignore[assignment]
    report = run(bench(args))
    print(render_table(report["results"]))
    for f in report["failures"]:
        print(
            f"\n{'FAILED' if f['measured'] else 'NOT MEASURED'} {f['side']} {f['path']} {f['mode']} "
            f"x{f['concurrency']}: {f['sessions_failed']} failed, {f['sessions_ok']} ok",
            *f["errors"],
            sep="\n  ",
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    print(
        f"\nJSON: {args.json}  ({report['duration_s']:.0f}s, {report['client']['cpu_count']} CPUs, "
        f"Python {report['client']['python']}, aiohttp {report['client']['packages']['aiohttp']})"
    )
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
