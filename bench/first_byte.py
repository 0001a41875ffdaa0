"""REST TTS first byte at one stream, the provider paced at real time: gateway mp3 against direct PCM.

    python bench/first_byte.py [--rounds 40] [--first-audio-ms 100] [--tts-speed 1] [--workers 1]
                               [--sides direct,direct_ws,gw_pcm,gw_mp3] [--base DIR] [--json PATH]

Issue 12's "added first-audio p50 <= 5 ms at 1 stream" target, measured with enough sessions for a p50:
`load.py` at one stream runs one 9 s session per step. Here each session is a short text (about 1 s of
audio) and the sides run one session at a time, interleaved in a shuffled order every round, against
one emulator (`--first-audio-delay-ms`, `--tts-speed`) and one gateway:

- `direct`: Gradium REST TTS `pcm_48000`, `only_audio` (what `load.py` compares with);
- `gw_pcm`: ElevenLabs `POST .../stream?output_format=pcm_44100` through the gateway (passthrough:
  what the gateway costs without a codec);
- `gw_mp3`: the same with `mp3_44100_128` (Gradium is asked for `pcm_44100`, LAME encodes it);
- `direct_ws`: Gradium's TTS WebSocket, `pcm_44100`, on a socket opened before the clock starts, to the
  first `audio` message: what the gateway's upstream leg (a pooled socket) costs by itself; the
  emulator's WebSocket and REST paths do not reach the first audio equally fast;
- `base_mp3` (with `--base DIR`): `gw_mp3` through a second gateway run from another checkout
  (`PYTHONPATH=DIR`, e.g. `git archive <commit> gateway | tar -x -C DIR`), before/after in one run.

`first_ms` is request sent -> first body byte. Timing is wall clock on a shared machine: the script
prints the load average, the machine's busy share and the gateway's CPU per session next to it.
Every mp3 body is checked to decode (PyAV) to the duration of the PCM the direct side received.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import av
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import procs
from paths import API_KEY, MODEL_ID, VOICE_ID

RESULTS = Path(__file__).resolve().parent / "results"
TEXT = "Hello."
Session = Callable[[aiohttp.ClientSession], Awaitable[tuple[float, bytes]]]


async def _first_byte(resp: aiohttp.ClientResponse, t0: float) -> tuple[float, bytes]:
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {(await resp.read())[:300]!r}")
    first = 0.0
    body = bytearray()
    async for chunk in resp.content.iter_any():
        if chunk and not first:
            first = time.perf_counter() - t0
        body += chunk
    return first * 1e3, bytes(body)


def sides(emu: str, gw: str, base: str | None) -> dict[str, Session]:
    direct_body = orjson.dumps({"text": TEXT, "voice_id": VOICE_ID, "output_format": "pcm_48000", "only_audio": True})
    gw_body = orjson.dumps({"text": TEXT, "model_id": MODEL_ID})

    async def direct(http: aiohttp.ClientSession) -> tuple[float, bytes]:
        headers = {"x-api-key": API_KEY, "content-type": "application/json"}
        t0 = time.perf_counter()
        async with http.post(f"{emu}/api/post/speech/tts", data=direct_body, headers=headers) as r:
            return await _first_byte(r, t0)

    def gateway(output_format: str, gw: str = gw) -> Session:
        async def run(http: aiohttp.ClientSession) -> tuple[float, bytes]:
            headers = {"xi-api-key": API_KEY, "content-type": "application/json"}
            t0 = time.perf_counter()
            async with http.post(f"{gw}/v1/text-to-speech/{VOICE_ID}/stream", data=gw_body, headers=headers,
                                 params={"output_format": output_format}) as r:
                return await _first_byte(r, t0)

        return run

    ws_setup = orjson.dumps({"type": "setup", "model_name": "default", "voice_id": VOICE_ID,
                             "output_format": "pcm_44100"}).decode()
    ws_text = (orjson.dumps({"type": "text", "text": TEXT}).decode(), orjson.dumps({"type": "end_of_stream"}).decode())

    async def direct_ws(http: aiohttp.ClientSession) -> tuple[float, bytes]:
        async with http.ws_connect(f"{emu.replace('http', 'ws', 1)}/api/speech/tts",
                                   headers={"x-api-key": API_KEY}) as ws:
            t0 = time.perf_counter()
            for m in (ws_setup, *ws_text):
                await ws.send_str(m)
            first = 0.0
            async for raw in ws:
                if raw.type != aiohttp.WSMsgType.TEXT:
                    break
                kind = orjson.loads(raw.data).get("type")
                if kind == "audio" and not first:
                    first = (time.perf_counter() - t0) * 1e3
                elif kind in ("end_of_stream", "error"):
                    break
            if not first:
                raise RuntimeError("no audio on the Gradium WebSocket")
            return first, b""

    out = {"direct": direct, "direct_ws": direct_ws, "gw_pcm": gateway("pcm_44100"),
           "gw_mp3": gateway("mp3_44100_128")}
    if base is not None:
        out["base_mp3"] = gateway("mp3_44100_128", base)
    return out


def mp3_seconds(body: bytes) -> float:
    """Decoded duration of an mp3 body (raises on a stream PyAV cannot read)."""
    with av.open(io.BytesIO(body), format="mp3") as c:
        return sum(f.samples for f in c.decode(audio=0)) / 44100


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


async def bench(args: argparse.Namespace) -> dict[str, object]:
    emu_args = ["--first-audio-delay-ms", str(args.first_audio_ms), "--tts-speed", str(args.tts_speed)]
    emulator = await procs.start_emulator(RESULTS, *emu_args)
    gateway = await procs.start_gateway(emulator.url, RESULTS, "--workers", str(args.workers))
    base = None
    if args.base:
        os.environ["PYTHONPATH"] = str(args.base)  # the gateway package of that checkout comes first
        try:
            base = await procs.start_gateway(emulator.url, RESULTS / "base", "--workers", str(args.workers))
        finally:
            del os.environ["PYTHONPATH"]
    firsts: dict[str, list[float]] = {name: [] for name in args.sides}
    cpu: dict[str, float] = dict.fromkeys(args.sides, 0.0)
    durations: list[float] = []
    load0, busy0 = os.getloadavg(), procs.machine_busy()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            run = sides(emulator.url, gateway.url, base.url if base else None)
            for name in args.sides:  # warm-up: pools, imports, the first encoder
                for _ in range(3):
                    await run[name](http)
            rng = random.Random(0)
            for _ in range(args.rounds):
                order = list(args.sides)
                rng.shuffle(order)
                pcm_s = mp3_s = None
                for name in order:
                    proc = base if base is not None and name.startswith("base") else gateway
                    c0 = proc.cpu_s() or 0.0
                    first, body = await run[name](http)
                    cpu[name] += (proc.cpu_s() or 0.0) - c0
                    firsts[name].append(first)
                    if name == "direct":
                        pcm_s = len(body) / 96000
                    elif name.endswith("mp3"):
                        mp3_s = mp3_seconds(body)
                if pcm_s is not None and mp3_s is not None:
                    durations.append(mp3_s - pcm_s)
    finally:
        await procs.stop(gateway)
        if base is not None:
            await procs.stop(base)
        await procs.stop(emulator)
    busy1 = procs.machine_busy()
    return {
        "loadavg": (load0, os.getloadavg()),
        "machine_busy_pct": 100 * (busy1[0] - busy0[0]) / max(1.0, busy1[1] - busy0[1]),
        "first_ms": {k: {"p10": pct(v, 0.1), "p50": statistics.median(v), "p90": pct(v, 0.9), "min": min(v)}
                     for k, v in firsts.items()},
        "gw_cpu_ms_per_session": {k: 1e3 * v / args.rounds for k, v in cpu.items()},
        "mp3_minus_pcm_s": (min(durations), max(durations)) if durations else None,
        "raw": firsts,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--first-audio-ms", type=float, default=100.0)
    parser.add_argument("--tts-speed", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--sides", default=None, help="default: direct,direct_ws,gw_pcm,gw_mp3 (+ base_mp3)")
    parser.add_argument("--base", type=Path, default=None, help="also run a gateway from this checkout")
    parser.add_argument("--json", type=Path, default=RESULTS / "first_byte.json")
    args = parser.parse_args()
    sides_arg = args.sides or "direct,direct_ws,gw_pcm,gw_mp3" + (",base_mp3" if args.base else "")
    args.sides = [s for s in sides_arg.split(",") if s]
    report = asyncio.run(bench(args))
    first = report["first_ms"]
    assert isinstance(first, dict)
    print(f"load average {report['loadavg']}, machine busy {report['machine_busy_pct']:.0f}%")
    for name, q in first.items():
        direct = first.get("direct")
        added = f"  added p50 {q['p50'] - direct['p50']:+.1f}" if direct and name != "direct" else ""
        print(f"{name:7s} first byte ms: p10 {q['p10']:.1f} p50 {q['p50']:.1f} p90 {q['p90']:.1f} "
              f"min {q['min']:.1f}{added}  gw CPU ms/session {report['gw_cpu_ms_per_session'][name]:.1f}")
    if report["mp3_minus_pcm_s"] is not None:
        lo, hi = report["mp3_minus_pcm_s"]
        print(f"mp3 decoded duration minus PCM duration: {lo * 1e3:+.1f} .. {hi * 1e3:+.1f} ms")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
