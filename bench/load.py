"""Realistic load: a paced emulator, clients at real time, stream counts stepped up, direct vs gateway.

    python bench/load.py [--quick] [--max-streams N] [--paths tts_ws,rest_mp3,dg_live,el_stt]
                         [--workers N] [--first-audio-ms 100] [--tts-speed 5] [--stt-seconds 30] [--json PATH]

The emulator answers like a provider (first audio after --first-audio-ms per request, then
--tts-speed times real time; STT replays computed answers so its decoder does not hide the gateway).
For each path and stream count N, N streams run side by side for --duration seconds (each stream runs
sessions back to back; a TTS socket stream waits for its audio to play out first), first straight to the
emulator (direct), then through the gateway, in the same run. An STT session lasts --stt-seconds (the clip
looped), as a live stream does, not one 2.9 s clip.
See bench/README.md ("Realistic load") for the columns and the targets.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load_paths
import load_report
import paths
import paths_elevenlabs
import procs
from paths import SttInput, TtsInput

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
TTS_TEXT = "The quick brown fox jumps over the lazy dog, then naps in the warm afternoon sun."
STT_TEXT = "Hello world, testing the gateway."
STEPS = {
    "tts_ws": (50, 200, 500, 1000),
    "rest_mp3": (1, 50, 100, 200),
    "dg_live": (200, 500, 1000, 2000),
    "el_stt": (200, 500, 1000, 2000),
}
SESSION_TIMEOUT_S = 30.0  # STT: beyond the session's audio
STT_SECONDS = 30.0  # a live STT session (a call, a voice agent's turn-taking) lasts minutes, not a clip
STT_SECONDS_QUICK = 10.0
# The per-session share of a live stream's gateway CPU: sessions with no audio, a few at a time.
CALIBRATION_SESSIONS, CALIBRATION_STREAMS = 200, 10
RAMP_S = 2.0  # stream starts spread over this, so live streams are out of phase like real ones
SessionFn = Callable[[paths.Trace], Awaitable[dict[str, Any]]]


@dataclass
class Side:
    samples: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stream_s: float = 0.0
    wall_s: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)
    loadgen_cpu_s: float = 0.0
    machine_busy: float = 0.0  # share of all cores, every tenant of the machine included
    rss_mb: float = 0.0
    rss_idle_mb: float = 0.0


async def guarded(fn: SessionFn, timeout_s: float = SESSION_TIMEOUT_S) -> dict[str, Any] | str:
    trace = paths.new_trace()
    try:
        return await asyncio.wait_for(fn(trace), timeout_s)
    except TimeoutError:
        return f"timeout after {timeout_s:.0f}s; last messages: {list(trace)}"
    except paths.PathError as exc:
        return str(exc)
    except aiohttp.WSServerHandshakeError as exc:
        return f"WebSocket handshake refused: HTTP {exc.status}"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


async def run_step(fn: SessionFn, n: int, duration_s: float, gateway: procs.Proc | None,
                   running: list[procs.Proc], timeout_s: float = SESSION_TIMEOUT_S, listen: bool = False,
                   ramp_s: float | None = None) -> Side:
    """`n` streams for `duration_s` (plus the ramp); every session started before the deadline is waited for.
    `listen` (TTS): a stream plays what it gets at real time, and asks for its next utterance once the last
    one has played out (first audio + its length), as a voice agent does; it never asks for audio faster
    than real time, though each utterance still arrives at the provider's speed. `ramp_s` (default RAMP_S):
    the span the streams' starts are spread over."""
    side = Side()
    if gateway is not None:
        side.rss_idle_mb = gateway.rss_mb()
    cpu0 = {p.name: p.cpu_s() or 0.0 for p in running}
    busy0, lg0, t0 = procs.machine_busy(), time.process_time(), time.perf_counter()
    ramp = RAMP_S if ramp_s is None else ramp_s
    deadline = t0 + ramp + duration_s

    async def stream(i: int) -> None:
        await asyncio.sleep(i * ramp / n)
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            result = await guarded(fn, timeout_s)
            if listen and isinstance(result, dict):
                played_out = start + result["first_ms"] / 1e3 + result["audio_s"]
                await asyncio.sleep(max(0.0, played_out - time.perf_counter()))
            side.stream_s += time.perf_counter() - start
            (side.samples if isinstance(result, dict) else side.errors).append(result)  # type: ignore[arg-type]

    async def watch_rss() -> None:
        while gateway is not None:
            side.rss_mb = max(side.rss_mb, gateway.rss_mb())
            await asyncio.sleep(1.0)

    watcher = asyncio.create_task(watch_rss())
    try:
        await asyncio.gather(*(stream(i) for i in range(n)))
    finally:
        watcher.cancel()
    side.wall_s = time.perf_counter() - t0
    side.loadgen_cpu_s = time.process_time() - lg0
    side.cpu_s = {p.name: (p.cpu_s() or 0.0) - cpu0[p.name] for p in running}
    busy1 = procs.machine_busy()
    side.machine_busy = (busy1[0] - busy0[0]) / max(1.0, busy1[1] - busy0[1])
    return side


def pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def summarize(side: Side, n: int, session_cpu_ms: float | None = None) -> dict[str, Any]:
    """One side of a step; `session_cpu_ms` (STT: a session's own gateway CPU, see `session_cpu`) splits the
    gateway's CPU into per session and per frame."""
    first = [s["first_ms"] for s in side.samples]
    gaps = [g for s in side.samples for g in s.get("gaps_ms", ())]
    out: dict[str, Any] = {
        "sessions_ok": len(side.samples),
        "sessions_failed": len(side.errors),
        "errors": sorted(set(side.errors), key=side.errors.index)[:3],
        "first_p50": pct(first, 50),
        "first_p99": pct(first, 99),
        "gap_p99": pct(gaps, 99),
        "underrun_sessions": sum(1 for s in side.samples if s.get("underruns")),
        "wall_s": side.wall_s,
        "stream_s": side.stream_s,
        "cpu_s": side.cpu_s,
        "loadgen_cpu_pct": 100 * side.loadgen_cpu_s / side.wall_s,
        "machine_busy_pct": 100 * side.machine_busy,
    }
    # CPU of everything else on the machine (other tenants), in % of one core: when it is large, the
    # machine, not the gateway, sets the numbers.
    ours = sum(side.cpu_s.values()) + side.loadgen_cpu_s
    cores = len(os.sched_getaffinity(0))
    out["others_cpu_pct"] = max(0.0, side.machine_busy * cores * 100 - 100 * ours / side.wall_s)
    if "gateway" in side.cpu_s and side.stream_s:
        out["gw_cpu_ms_per_stream_s"] = 1e3 * side.cpu_s["gateway"] / side.stream_s
        out["gw_rss_mb"] = side.rss_mb
        out["gw_rss_kb_per_stream"] = 1024 * max(0.0, side.rss_mb - side.rss_idle_mb) / n
        audio_s = sum(s.get("audio_s", 0.0) for s in side.samples)  # TTS: audio the clients received
        if audio_s:
            out["gw_cpu_ms_per_audio_s"] = 1e3 * side.cpu_s["gateway"] / audio_s
        frames = sum(s.get("frames", 0) for s in side.samples)
        if session_cpu_ms is not None and frames and not side.errors:
            # what the sessions' own cost leaves is the frames' (an estimate: the calibration ran a few
            # streams at a time, where each loop turn serves fewer sockets than at N)
            frames_ms = 1e3 * side.cpu_s["gateway"] - len(side.samples) * session_cpu_ms
            out["gw_cpu_ms_per_session"] = session_cpu_ms
            out["gw_cpu_us_per_frame"] = 1e3 * max(0.0, frames_ms) / frames
    return out


async def session_cpu(fn: SessionFn, gateway: procs.Proc) -> float | None:
    """The gateway's CPU ms per STT session with no audio (handshake, setup, the Gradium socket, close):
    CALIBRATION_SESSIONS of them, CALIBRATION_STREAMS at a time; None if one failed."""
    failed = 0

    async def stream() -> None:
        nonlocal failed
        for _ in range(CALIBRATION_SESSIONS // CALIBRATION_STREAMS):
            failed += not isinstance(await guarded(fn), dict)

    cpu0 = gateway.cpu_s() or 0.0
    await asyncio.gather(*(stream() for _ in range(CALIBRATION_STREAMS)))
    await asyncio.sleep(0.5)  # the last sessions' ends on the gateway's side
    cpu = (gateway.cpu_s() or 0.0) - cpu0
    return None if failed else 1e3 * cpu / (CALIBRATION_SESSIONS // CALIBRATION_STREAMS * CALIBRATION_STREAMS)


def sessions(emu: str, gw: str, http: aiohttp.ClientSession, stt_seconds: float = 0.0,
             paced: bool = True) -> dict[str, tuple[SessionFn, SessionFn]]:
    """(direct, gateway) per path; STT sessions last `stt_seconds` (0: one clip), at real time unless not `paced`."""
    tts, stt = TtsInput.build(TTS_TEXT), SttInput.build(STT_TEXT, stt_seconds)
    rt = paths_elevenlabs.RealtimeInput.build(stt)
    p = functools.partial

    def stt_first(fn: Callable[..., Awaitable[dict[str, Any]]], *a: Any) -> SessionFn:
        async def run(trace: paths.Trace) -> dict[str, Any]:
            sample = await fn(*a, trace)
            return {"first_ms": sample["first_word_ms"], "words_ok": sample["words_ok"], "frames": len(stt.chunks)}

        return run

    return {
        "tts_ws": (p(load_paths.tts_ws_direct, http, emu, tts), p(load_paths.tts_ws_gateway, http, gw, tts)),
        "rest_mp3": (p(load_paths.rest_direct, http, emu, tts), p(load_paths.rest_mp3_gateway, http, gw, tts)),
        "dg_live": (
            stt_first(paths.stt_direct, http, emu, stt, paced),
            stt_first(paths.stt_gateway, http, gw, stt, paced),
        ),
        "el_stt": (
            stt_first(paths_elevenlabs.realtime_direct, http, emu, rt, paced),
            stt_first(paths_elevenlabs.realtime_gateway, http, gw, rt, paced),
        ),
    }


EMPTY = {"dg_live": load_paths.dg_empty, "el_stt": load_paths.el_empty}  # the STT paths: sessions with no audio
# TTS socket streams are listeners (`run_step(listen=True)`); REST mp3 streams stay back to back: its target
# (0.8 x cores x LAME factor / provider speed) counts streams that all generate at once
LISTENERS = {"tts_ws"}


def steps_for(lame: dict[str, float]) -> dict[str, tuple[int, ...]]:
    """The fixed steps, plus REST mp3 at its target (80 % of the LAME capacity measured here)."""
    target = max(1, round(lame["target_streams"]))
    return {**STEPS, "rest_mp3": tuple(sorted({*STEPS["rest_mp3"], target}))}


async def bench_path(path: str, path_steps: tuple[int, ...], args: argparse.Namespace, http: aiohttp.ClientSession,
                     emulator: procs.Proc, gateway: procs.Proc) -> list[dict[str, Any]]:
    """Every step of one path, direct and through `gateway`, alternating which side goes first."""
    running = [emulator, gateway]
    stt = path in EMPTY
    direct, gw = sessions(emulator.url, gateway.url, http, args.stt_seconds)[path]
    # warm up: pools, imports, caches (the STT replay trie); the same sessions, not paced (as fast as the
    # emulator decodes them), so a long STT session does not take minutes
    warm: dict[str, Any] | str = ""
    for fn in sessions(emulator.url, gateway.url, http, args.stt_seconds, paced=False)[path]:
        for _ in range(3):
            warm = await guarded(fn)
    listen = path in LISTENERS and not args.tts_back_to_back
    # listeners' starts spread over one utterance cycle (first audio + its length): the same utterance
    # started within RAMP_S on every stream would keep them in phase, every stream's audio at once
    ramp_s = max(RAMP_S, warm["first_ms"] / 1e3 + warm["audio_s"]) if listen and isinstance(warm, dict) else None
    timeout_s = SESSION_TIMEOUT_S + (args.stt_seconds if stt else 0.0)
    session_ms = await session_cpu(functools.partial(EMPTY[path], http, gateway.url), gateway) if stt else None
    rows: list[dict[str, Any]] = []
    # below every step, one step at --max-streams (a smoke run)
    counts = [s for s in path_steps if s <= args.max_streams] or [args.max_streams]
    for i, n in enumerate(counts):
        order = [("direct", direct), ("gateway", gw)]
        row: dict[str, Any] = {"path": path, "streams": n}
        if stt:
            row["stt_session_s"] = SttInput.build(STT_TEXT, args.stt_seconds).audio_s
        for name, fn in order if i % 2 == 0 else reversed(order):
            replay0 = await replay_counters(http, emulator) if stt else {}
            side = await run_step(fn, n, args.duration, gateway if name == "gateway" else None, running, timeout_s,
                                  listen=listen, ramp_s=ramp_s)
            row[name] = summarize(side, n, session_ms if name == "gateway" else None)
            if stt:
                replay1 = await replay_counters(http, emulator)
                row[name]["emulator_replay"] = {k: replay1.get(k, 0) - replay0.get(k, 0) for k in REPLAY_COUNTERS}
            await asyncio.sleep(1.0)  # let sockets close before the next side
        row |= load_report.compare(row)
        rows.append(row)
        print(load_report.render_row(row), file=sys.stderr, flush=True)
        if stt:
            print("  emulator STT replay: " + "; ".join(
                f"{side} " + " ".join(f"{k} {row[side]['emulator_replay'][k]}" for k in REPLAY_COUNTERS)
                for side in ("direct", "gateway")), file=sys.stderr, flush=True)
        if row["gateway"]["sessions_failed"] > row["gateway"]["sessions_ok"]:
            print(f"  {path}: most gateway sessions failed at {n}; not going higher", file=sys.stderr)
            break
    return rows


REPLAY_COUNTERS = ("hits", "misses", "decodes")


async def replay_counters(http: aiohttp.ClientSession, emulator: procs.Proc) -> dict[str, int]:
    """The emulator's STT replay counters: a side whose emulator decodes audio (decodes, not hits) measures
    the rig's tone decoder, not the gateway."""
    async with http.get(f"{emulator.url}/_emulator/stats") as resp:
        return (await resp.json()).get("stt_replay", {})


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    lame = load_report.lame_capacity(args.tts_speed)  # measured before anything else runs
    steps = steps_for(lame)
    emu_args = ["--first-audio-delay-ms", str(args.first_audio_ms), "--tts-speed", str(args.tts_speed), "--stt-replay"]
    emulator = await procs.start_emulator(RESULTS, *emu_args)
    gw_args = ["--workers", str(args.workers)] if args.workers else []
    rows: list[dict[str, Any]] = []
    alive, exit_codes = True, {}
    started = time.perf_counter()
    load0 = os.getloadavg()
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as http:
            for path in args.paths:
                # A fresh gateway per path: its RSS (and any leak) is this path's, not the peak an earlier
                # path (mp3 encoders) left behind.
                gateway = await procs.start_gateway(emulator.url, RESULTS, *gw_args, exe=args.gateway_bin)
                try:
                    rows += await bench_path(path, steps[path], args, http, emulator, gateway)
                finally:
                    alive = alive and gateway.alive()
                    exit_codes[f"gateway {path}"] = await procs.stop(gateway)
    finally:
        exit_codes["emulator"] = await procs.stop(emulator)
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": time.perf_counter() - started,
        "config": {k: v for k, v in vars(args).items() if k != "json"} | {"tts_text": TTS_TEXT, "stt_text": STT_TEXT},
        "machine": {"cpus": len(os.sched_getaffinity(0)), "loadavg_start": load0, "loadavg_end": os.getloadavg()},
        "lame_capacity": lame,
        "gateway_alive_at_end": alive,
        "exit_codes": exit_codes,
        "rows": rows,
    }


def path_list(parser: argparse.ArgumentParser, paths: str, known: Iterable[str]) -> list[str]:
    """`--paths a,b` as a list; an unknown name is a usage error."""
    out = [p for p in paths.split(",") if p]
    if unknown := set(out) - set(known):
        parser.error(f"unknown paths {sorted(unknown)}; known: {', '.join(known)}")
    return out


def run_load(main: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    """Runs a load generator: every file descriptor the hard limit allows (thousands of sockets; the
    gateway and emulator children inherit it), on uvloop where it is installed."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="6 s per step, at most 500 streams, 10 s STT sessions: a few minutes")
    parser.add_argument("--max-streams", type=int, default=None, help="skip steps above this many streams")
    parser.add_argument("--paths", default=",".join(STEPS), help=f"comma-separated subset of {','.join(STEPS)}")
    parser.add_argument("--duration", type=float, default=None, help="seconds per step after the ramp (default 15)")
    parser.add_argument("--workers", type=int, default=None, help="pass --workers N to the gateway")
    parser.add_argument("--first-audio-ms", type=float, default=100.0, help="emulator first-audio delay")
    parser.add_argument("--tts-speed", type=float, default=5.0, help="emulator TTS pacing, times real time")
    parser.add_argument("--stt-seconds", type=float, default=None,
                        help=f"seconds per STT session, the clip looped (default {STT_SECONDS:g}, "
                        f"--quick {STT_SECONDS_QUICK:g})")
    parser.add_argument("--gateway-bin", default=None, metavar="PATH",
                        help="serve with another version's gradium-gateway executable (same emulator and load)")
    parser.add_argument("--tts-back-to-back", action="store_true",
                        help="tts_ws streams start their next session as soon as the last one ends (5x real time "
                        "per stream), instead of once its audio has played out")
    parser.add_argument("--json", type=Path, default=RESULTS / "load.json")
    args = parser.parse_args()
    args.paths = path_list(parser, args.paths, STEPS)
    args.max_streams = args.max_streams or (500 if args.quick else 10**9)
    args.duration = args.duration or (6.0 if args.quick else 15.0)
    if args.stt_seconds is None:
        args.stt_seconds = STT_SECONDS_QUICK if args.quick else STT_SECONDS
    report = run_load(bench(args))
    print(load_report.render(report))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    print(f"\nJSON: {args.json}")
    return 0 if report["gateway_alive_at_end"] else 1


if __name__ == "__main__":
    sys.exit(main())
