"""When does a session's end reach the client? Several gateway versions on one emulator, sessions alternated.

```
python bench/end_timing.py --gateway base=/work/venvs/base/bin --gateway mine=/work/venvs/NAME/bin
python bench/end_timing.py --sessions 400 --paths tts_ws      # more rounds, one path
```

Each `--gateway LABEL=BIN[@WORKERS]` starts `BIN/gradium-gateway serve` (`--workers WORKERS`, default 1, when
that version has the flag) on the same emulator (`gradium-gateway emulate` from this script's own environment). Then
rounds: in each round every gateway serves one session of each path, in an order that rotates every round,
so drift and other tenants' load hit every version alike. Sessions are the bench's (`bench/paths.py`):

- `tts_ws`: ElevenLabs stream-input; `eos->final` is the client's last send (`{"text":""}`) to `isFinal`,
  `final->close` is `isFinal` to the server's close frame, `total` from before the handshake to the close.
- `tts_rest`: ElevenLabs `/stream?output_format=pcm_48000`; `first`, `last` (the last body bytes) and `eof`
  (the end of the chunked body), each from sending the request, and `last->eof`.

`cpu` is the gateway's CPU time (all its threads, schedstat) over the session and 2 ms after it, `emu_cpu`
the emulator's.

It prints medians (and p25/p75) per gateway and the machine's load average; compare versions within one
run, not absolute figures across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from paths import API_KEY, MODEL_ID, VOICE_ID, WS_OPTS, TtsInput
from procs import HOST, Proc, _start, free_port, start_emulator, stop, tree_cpu_ns
from run import TTS_TEXT

now = time.perf_counter
LOGS = Path(__file__).resolve().parent / "results" / "end_timing"


async def tts_ws(http: aiohttp.ClientSession, base: str, inp: TtsInput) -> dict[str, float]:
    url = "ws" + base.removeprefix("http") + f"/v1/text-to-speech/{VOICE_ID}/stream-input"
    t0 = now()
    t_final = t_close = 0.0
    async with http.ws_connect(url, params={"model_id": MODEL_ID, "output_format": "pcm_24000"},
                               headers={"xi-api-key": API_KEY}, **WS_OPTS) as ws:
        t_open = now()
        for m in inp.ws_gateway_msgs:
            await ws.send_str(m)
        t_eos = now()
        t_first = 0.0
        while True:
            msg = await ws.receive()
            if msg.type is not aiohttp.WSMsgType.TEXT:
                t_close = now()
                break
            data = orjson.loads(msg.data)
            if data.get("audio") and not t_first:
                t_first = now()
            if data.get("isFinal"):
                t_final = now()
    if not t_final:
        raise RuntimeError("no isFinal")
    return {"connect": (t_open - t0) * 1e3, "first": (t_first - t_open) * 1e3,
            "eos->final": (t_final - t_eos) * 1e3, "final->close": (t_close - t_final) * 1e3,
            "total": (t_close - t0) * 1e3}


async def tts_rest(http: aiohttp.ClientSession, base: str, inp: TtsInput) -> dict[str, float]:
    url = f"{base}/v1/text-to-speech/{VOICE_ID}/stream"
    headers = {"xi-api-key": API_KEY, "content-type": "application/json"}
    t0 = now()
    first = last = 0.0
    async with http.post(url, params={"output_format": "pcm_48000"}, data=inp.rest_gateway_body,
                         headers=headers) as r:
        if r.status != 200:
            raise RuntimeError(f"HTTP {r.status}: {await r.text()}")
        async for chunk in r.content.iter_any():
            if chunk:
                last = now()
                first = first or last
        eof = now()
    return {"first": (first - t0) * 1e3, "last": (last - t0) * 1e3, "eof": (eof - t0) * 1e3,
            "last->eof": (eof - last) * 1e3}


PATHS = {"tts_ws": tts_ws, "tts_rest": tts_rest}


async def start_gateway(label: str, bin_dir: str, emulator: Proc) -> Proc:
    bin_dir, _, workers = bin_dir.partition("@")
    exe = str(Path(bin_dir) / "gradium-gateway")
    help_text = subprocess.run([exe, "serve", "--help"], capture_output=True, text=True).stdout
    extra = ["--workers", workers or "1"] if "--workers" in help_text else []
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("GATEWAY_CONFIG", "GRADIUM_API_KEY")}
    env.update(GATEWAY_LOG_LEVEL="warning", GRADIUM_BASE_URL=f"{emulator.url}/api")
    argv = [exe, "serve", "--host", HOST, "--port", str(port), *extra]
    return await _start(f"gateway-{label}", argv, env, port, LOGS, http=True)


def summary(values: list[float]) -> str:
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return f"{q[1]:7.2f} [{q[0]:6.2f}..{q[2]:6.2f}]"


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--gateway", action="append", required=True, metavar="LABEL=BIN[@WORKERS]",
                    help="a version to time: its label, the bin directory of its venv and its workers (default 1) "
                         "(repeat)")
    ap.add_argument("--sessions", type=int, default=200, help="sessions per gateway and path")
    ap.add_argument("--warmup", type=int, default=10, help="untimed sessions per gateway and path")
    ap.add_argument("--paths", default="tts_ws,tts_rest")
    ap.add_argument("--conns", type=int, default=8, help="keep-alive connections per gateway for tts_rest")
    args = ap.parse_args()
    gateways = [tuple(g.split("=", 1)) for g in args.gateway]
    paths = [p for p in args.paths.split(",") if p]
    inp = TtsInput.build(TTS_TEXT)
    emulator = await start_emulator(LOGS)
    procs: list[Proc] = []
    results: dict[tuple[str, str], dict[str, list[float]]] = {}
    load0 = os.getloadavg()
    try:
        for label, bin_dir in gateways:
            procs.append(await start_gateway(label, bin_dir, emulator))
        async with aiohttp.ClientSession() as http:
            if "tts_rest" in paths:
                # several keep-alive connections per gateway, which the client then takes in turn (aiohttp
                # reuses the oldest idle one), as the bench's client does after its loaded warm-up: with
                # workers, requests land on each worker (SO_REUSEPORT), not on the one the first connection hit
                await asyncio.gather(*(tts_rest(http, p.url, inp) for p in procs for _ in range(args.conns)))
            for rnd in range(args.warmup + args.sessions):
                order = list(range(len(procs)))
                shift = rnd % len(order)
                order = order[shift:] + order[:shift]
                for path in paths:
                    for i in order:
                        cpu0, emu0 = tree_cpu_ns(procs[i]), tree_cpu_ns(emulator)
                        sample = await PATHS[path](http, procs[i].url, inp)
                        await asyncio.sleep(0.002)  # the gateway's cleanup after the session counts too
                        sample["cpu"] = (tree_cpu_ns(procs[i]) - cpu0) / 1e6
                        sample["emu_cpu"] = (tree_cpu_ns(emulator) - emu0) / 1e6
                        if rnd >= args.warmup:
                            cell = results.setdefault((path, gateways[i][0]), {})
                            for k, v in sample.items():
                                cell.setdefault(k, []).append(v)
    finally:
        for p in procs:
            await stop(p)
        await stop(emulator)
    load1 = os.getloadavg()
    print(f"load average at start {load0[0]:.2f} {load0[1]:.2f}, at end {load1[0]:.2f} {load1[1]:.2f}; "
          f"{args.sessions} sessions per gateway and path; median [p25..p75] ms")
    for path in paths:
        for label, _ in gateways:
            cell = results[(path, label)]
            print(f"{path:9} {label:10} " + "  ".join(f"{k} {summary(v)}" for k, v in cell.items()))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(main()))
