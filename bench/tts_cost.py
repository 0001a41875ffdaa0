"""The gateway's instructions per ElevenLabs stream-input session and per audio frame, from a gateway of its own.

    python bench/tts_cost.py                               # 20 sessions per phase, callgrind (a few minutes)
    python bench/tts_cost.py --sessions 10 --annotate /tmp/cg   # also keep the dumps
    python bench/tts_cost.py --tool cpu --sessions 100     # process CPU instead (noisy on a shared machine)

`bench/load.py`'s `tts_ws` sessions are short (handshake, `{"text":" "}`, 4 text chunks, `{"text":""}`,
a few seconds of audio, `isFinal`, close), so their cost mixes what a session costs once with what each
Gradium audio frame costs. Like `stt_cost.py`, this runs `gradium-gateway serve --workers 1` under
`valgrind --tool=callgrind` (instrumentation off until the warm-up is over), the emulator paced like a
provider (`--first-audio-delay-ms 100 --tts-speed 5`, as `load.py` runs it) and the client as other
processes, then two phases whose instructions are dumped separately (`callgrind_control`):

- `empty`: connect, `{"text":" "}`, `{"text":""}`, read until the close: the per-session cost
  (handshake, mapping setup, the upstream socket's checkout and setup, teardown, log line, metrics);
- `full`: `load.py`'s session (`load_paths.tts_ws_gateway`, pcm_24000 passthrough): per frame =
  (full - empty) / frames, where frames are the Gradium `audio` messages of one session (counted on
  the direct path before the run).

Instruction counts are deterministic up to a fraction of a percent (`PYTHONHASHSEED=0`), so a busy
machine does not move them. `--annotate DIR` keeps the dumps for `callgrind_annotate --inclusive=yes`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cost_phases
import load_paths
import paths
import procs
from load import TTS_TEXT
from paths import API_KEY, MODEL_ID, VOICE_ID, WS_OPTS, TtsInput, _ws_url


async def empty_session(http: aiohttp.ClientSession, base: str) -> None:
    url = f"{_ws_url(base)}/v1/text-to-speech/{VOICE_ID}/stream-input"
    params = {"model_id": MODEL_ID, "output_format": "pcm_24000"}
    async with http.ws_connect(url, params=params, headers={"xi-api-key": API_KEY}, **WS_OPTS) as ws:
        await ws.send_str('{"text":" "}')
        await ws.send_str('{"text":""}')
        async for _ in ws:
            pass
        assert ws.close_code == 1000, ws.close_code


async def count_frames(http: aiohttp.ClientSession, emulator: str, inp: TtsInput) -> int:
    """Gradium `audio` messages for the bench's text, straight from the emulator."""
    frames = 0
    async with http.ws_connect(f"{_ws_url(emulator)}/api/speech/tts", headers={"x-api-key": API_KEY},
                               **WS_OPTS) as ws:
        for m in inp.ws_direct_msgs:
            await ws.send_str(m)
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT and orjson.loads(msg.data).get("type") == "audio":
                frames += 1
    return frames


async def run(args: argparse.Namespace, out: Path) -> dict[str, float]:
    emulator = await procs.start_emulator(out / "logs", "--first-audio-delay-ms", str(args.first_audio_ms),
                                          "--tts-speed", str(args.tts_speed))
    gateway = await cost_phases.start_gateway(args.tool, out, emulator.url, args.log_level)
    inp = TtsInput.build(TTS_TEXT)
    try:
        async with aiohttp.ClientSession() as http:
            n_frames = await count_frames(http, emulator.url, inp)

            async def empty() -> None:
                await empty_session(http, gateway.url)

            async def full() -> None:
                sample = await load_paths.tts_ws_gateway(http, gateway.url, inp, paths.new_trace())
                assert sample["underruns"] is not None and sample["audio_s"] > 0, sample

            for fn in (empty, full, empty, full):  # warm-up: imports, the upstream pool, caches
                await fn()
            counts = [await cost_phases.phase(args.tool, gateway, out, f"tts_ws-{phase}", fn, args.sessions,
                                              args.concurrency)
                      for phase, fn in (("empty", empty), ("full", full))]
    finally:
        await procs.stop(gateway)
        await procs.stop(emulator)
    return cost_phases.split(*counts, args.sessions, n_frames)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--first-audio-ms", type=float, default=100.0, help="emulator first-audio delay (load.py: 100)")
    ap.add_argument("--tts-speed", type=float, default=5.0, help="emulator TTS pacing, times real time (load.py: 5)")
    cost_phases.add_arguments(ap, "tts_ws")
    args = ap.parse_args()
    out = cost_phases.out_dir(args, "tts_cost-")
    cost_phases.report(args, {"tts_ws": asyncio.run(run(args, out))}, out)


if __name__ == "__main__":
    main()
