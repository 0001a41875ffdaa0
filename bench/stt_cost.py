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
import sys
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cost_phases
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


async def run(args: argparse.Namespace, out: Path) -> dict[str, dict[str, float]]:
    paths.CHUNK_S = args.pace_ms / 1000  # `_SttRun.send` reads it at every frame
    emulator = await procs.start_emulator(out / "logs", "--stt-replay")
    gateway = await cost_phases.start_gateway(args.tool, out, emulator.url, args.log_level)
    n_frames = len(SttInput.build(STT_TEXT).chunks)
    results: dict[str, dict[str, float]] = {}
    try:
        async with aiohttp.ClientSession() as http:
            table = sessions(http, gateway.url)
            for name in args.paths:
                empty, full = table[name]
                for fn in (empty, full, empty, full):  # warm-up: imports, pools, caches (the replay trie)
                    await fn()
                counts = [await cost_phases.phase(args.tool, gateway, out, f"{name}-{phase}", fn, args.sessions,
                                                  args.concurrency)
                          for phase, fn in (("empty", empty), ("full", full))]
                results[name] = cost_phases.split(*counts, args.sessions, n_frames)
    finally:
        await procs.stop(gateway)
        await procs.stop(emulator)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--paths", default="dg_live,el_stt")
    ap.add_argument("--pace-ms", type=float, default=30.0, help="ms between frames (the bench: 80)")
    cost_phases.add_arguments(ap, "PATH")
    args = ap.parse_args()
    args.paths = args.paths.split(",")
    out = cost_phases.out_dir(args, "stt_cost-")
    cost_phases.report(args, asyncio.run(run(args, out)), out)


if __name__ == "__main__":
    main()
