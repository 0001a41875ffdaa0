"""Traffic benchmarks (issue 10), as ratios and added milliseconds in one run:

- `--shadow`: the primary's first output with shadow rate 1 against rate 0 (two gateways, same config but
  the rate, sessions interleaved), on the ElevenLabs stream-input socket (TTS) and Deepgram live (STT).
  Each shadow leg goes to a stand-in vendor (a third gateway on the same emulator).
- `--passthrough`: time to first audio through the gateway at weight 0 (passthrough) against a direct
  connection to the same stand-in vendor, one stream at a time.

Every process is separate and on loopback: emulator, stand-in vendor, gateways under test.
"""

from __future__ import annotations

import asyncio
import functools
import os
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import paths
import procs
import yaml
from paths import SttInput, TtsInput

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PROVIDERS = ("elevenlabs", "cartesia", "deepgram")


async def _gateway(name: str, emulator_url: str, config: dict[str, Any], log_dir: Path) -> procs.Proc:
    path = log_dir / f"{name}.yaml"
    log_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    port = procs.free_port()
    argv = procs._command("serve", "--host", procs.HOST, "--port", str(port))
    # the subprocess imports this checkout's gateway, whatever the environment's install points at
    env = procs._env(GRADIUM_BASE_URL=f"{emulator_url}/api", GATEWAY_CONFIG=str(path),
                     PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return await procs._start(name, argv, env, port, log_dir, http=True)


def _stats(xs: list[float]) -> dict[str, float | None]:
    if not xs:
        return {"n": 0, "p50": None, "p99": None}
    a = np.asarray(xs)
    return {"n": len(xs), "p50": round(float(np.percentile(a, 50)), 3), "p99": round(float(np.percentile(a, 99)), 3)}


async def _pairwise(fns: dict[str, Any], metric: str, n: int) -> dict[str, Any]:
    """`n` sessions per side, interleaved (a, b, a, b ...) so both sides see the same machine load."""
    got: dict[str, list[float]] = {k: [] for k in fns}
    errors: dict[str, int] = dict.fromkeys(fns, 0)
    for _ in range(n):
        for name, fn in fns.items():
            try:
                sample = await asyncio.wait_for(fn(paths.new_trace()), 30)
                got[name].append(sample[metric])
            except Exception:  # a failed session is counted, never a crash of the bench
                errors[name] += 1
    out: dict[str, Any] = {name: _stats(v) for name, v in got.items()}
    out["errors"] = errors
    return out


async def bench_traffic(shadow: bool, passthrough: bool, quick: bool, log_dir: Path) -> dict[str, Any]:
    emulator = await procs.start_emulator(log_dir)
    running = [emulator]
    results: dict[str, Any] = {}
    try:
        vendor = await _gateway("standin-vendor", emulator.url, {}, log_dir)
        running.append(vendor)
        legacy = {p: {"base_url": vendor.url} for p in PROVIDERS}
        tts, stt = TtsInput.build("The quick brown fox jumps over the lazy dog."), SttInput.build(
            "Hello world, testing the gateway.")
        n = 15 if quick else 60
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            if shadow:
                def cfg(rate: float) -> dict[str, Any]:
                    return {"legacy": legacy, "shadow": {"enabled": True, "allow_shared_keys": True, "rules": [
                        {"rate": rate, "budget": {"max_concurrent": 4}}]}}
                g0 = await _gateway("shadow-rate0", emulator.url, cfg(0), log_dir)
                running.append(g0)
                g1 = await _gateway("shadow-rate1", emulator.url, cfg(1), log_dir)
                running.append(g1)
                p = functools.partial
                results["shadow_tts_ws"] = await _pairwise(
                    {"rate0": p(paths.tts_ws_gateway, http, g0.url, tts),
                     "rate1": p(paths.tts_ws_gateway, http, g1.url, tts)}, "ttfa_ms", n)
                results["shadow_stt_live"] = await _pairwise(
                    {"rate0": p(paths.stt_gateway, http, g0.url, stt, True),
                     "rate1": p(paths.stt_gateway, http, g1.url, stt, True)}, "first_word_ms", max(6, n // 5))
                for key in ("shadow_tts_ws", "shadow_stt_live"):
                    r = results[key]
                    for q in ("p50", "p99"):
                        a, b = r["rate0"][q], r["rate1"][q]
                        r[f"ratio_{q}"] = round(b / a, 3) if a and b else None
            if passthrough:
                gp = await _gateway("passthrough", emulator.url, {"legacy": legacy,
                                                                  "traffic": {"default": {"gradium": 0}}}, log_dir)
                running.append(gp)
                p = functools.partial
                r = await _pairwise({"direct": p(paths.tts_ws_gateway, http, vendor.url, tts),
                                     "passthrough": p(paths.tts_ws_gateway, http, gp.url, tts)}, "ttfa_ms", n)
                r["added_p50_ms"] = round(r["passthrough"]["p50"] - r["direct"]["p50"], 3) \
                    if r["passthrough"]["p50"] is not None and r["direct"]["p50"] is not None else None
                results["passthrough_tts_ws"] = r
                r = await _pairwise({"direct": p(paths.tts_rest_gateway, http, vendor.url, tts, "pcm_24000"),
                                     "passthrough": p(paths.tts_rest_gateway, http, gp.url, tts, "pcm_24000")},
                                    "ttfa_ms", n)
                r["added_p50_ms"] = round(r["passthrough"]["p50"] - r["direct"]["p50"], 3) \
                    if r["passthrough"]["p50"] is not None and r["direct"]["p50"] is not None else None
                results["passthrough_tts_rest"] = r
    finally:
        for proc in running:
            await procs.stop(proc)
    return results
