"""The gateway's cost per Gradium frame, in CPU and allocations, robust to a loaded machine.

    python bench/frames.py                      # every scenario, CPU per frame (process_time)
    python bench/frames.py --scenario tts_ws    # one scenario
    python bench/frames.py --tool callgrind     # instructions per frame (valgrind), slow
    python bench/frames.py --tool dhat          # heap blocks allocated per frame (valgrind), slow

Everything runs in one process: a stub Gradium (an aiohttp server defined here, so it is the same
code whatever gateway version is measured), the gateway app (`create_app`) on loopback, and an aiohttp
client. Each scenario runs sessions whose Gradium answer has `--small` frames, then sessions with
`--big` frames; the cost per frame is the difference divided by the extra frames, so the per-session
costs (handshakes, setup, logs) and the stub's and client's fixed costs cancel. The stub's and the
client's per-frame work is the same code on both sides of a comparison; the gateway's is the rest.

Run it from a checkout with that checkout's venv to compare two versions, e.g. the base:

    cd /work/wt/base && PATH=/work/venvs/base/bin:$PATH python /path/to/bench/frames.py

`cpu`: process CPU time (user + system, `time.process_time`), the median over `--reps` alternating
small/big batches; other processes on the machine barely move it. `callgrind`: the process's
instruction count under valgrind (deterministic up to a fraction of a percent). `dhat`: heap blocks
allocated (`PYTHONMALLOC=malloc`, so every Python object allocation is a malloc), i.e. allocation
churn per frame, not memory held. `callgrind`/`dhat` run one process per (scenario, size).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
from aiohttp import web

API_KEY = "gsk_bench"
VOICE = "YTpq7expH9539ERJ"
CARTESIA_VOICE = "f786b574-daa5-4673-aa0c-cbe3e8534c02"
FRAME = {24000: 3840, 48000: 7680}  # 80 ms of s16le mono
WS_OPTS: dict[str, Any] = {"compress": 0, "max_msg_size": 0}


class Stub:
    """A Gradium that answers every request with `frames` messages as fast as it can."""

    def __init__(self) -> None:
        self.frames = 10
        self.words: int | None = None  # STT words per answer, when not `frames` (frames are client audio)
        self._audio: dict[int, str] = {}

    def audio_b64(self, rate: int) -> str:
        if rate not in self._audio:
            self._audio[rate] = base64.b64encode(bytes(FRAME.get(rate, 3840))).decode()
        return self._audio[rate]

    @staticmethod
    def rate(setup: dict[str, Any]) -> int:
        m = re.search(r"(\d+)", str(setup.get("output_format") or ""))
        return int(m.group(1)) if m else 24000

    def answer(self, kind: str, setup: dict[str, Any]) -> list[bytes]:
        tag = {"client_req_id": setup["client_req_id"]} if "client_req_id" in setup else {}
        if kind == "tts":
            b64 = self.audio_b64(self.rate(setup))
            out = [orjson.dumps({"type": "audio", "audio": b64, "start_s": i * 0.08, "stop_s": (i + 1) * 0.08,
                                 "stream_id": 0, **tag}) for i in range(self.frames)]
        else:
            # a word a second, each followed by a VAD step: segments end every `max_segment_s`, so a
            # transcript does not grow with the session
            out = []
            for i in range(self.frames if self.words is None else self.words):
                out.append(orjson.dumps({"type": "text", "text": f"w{i}", "start_s": float(i), "stream_id": 0, **tag}))
                out.append(orjson.dumps({"type": "step", "vad": [{"horizon_s": 0.5, "inactivity_prob": 0.0}],
                                         "step_idx": i, "step_duration_s": 1.0, "total_duration_s": i + 1.0,
                                         **tag}))
        return [*out, orjson.dumps({"type": "end_of_stream", **tag})]

    @staticmethod
    def ready(kind: str, setup: dict[str, Any]) -> bytes:
        msg: dict[str, Any] = {"type": "ready", "request_id": "req-bench", "model_name": "default",
                               "sample_rate": 24000 if kind == "tts" else 16000, "frame_size": 1920,
                               "delay_in_frames": 10, "text_stream_names": [], "audio_stream_names": []}
        if "client_req_id" in setup:
            msg["client_req_id"] = setup["client_req_id"]
        return orjson.dumps(msg)

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        kind = "tts" if request.path.endswith("tts") else "asr"
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        setups: dict[Any, dict[str, Any]] = {}
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            data = orjson.loads(msg.data)
            rid = data.get("client_req_id")
            if data.get("type") == "setup":
                setups[rid] = data
                await ws.send_str(self.ready(kind, data).decode())
            elif data.get("type") == "end_of_stream":
                for frame in self.answer(kind, setups.pop(rid, {})):
                    await ws.send_str(frame.decode())
        return ws

    async def rest(self, request: web.Request) -> web.StreamResponse:
        setup = await request.json()
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)
        await resp.write(self.ready("tts", setup) + b"\n")
        for frame in self.answer("tts", setup):
            await resp.write(frame + b"\n")
        await resp.write_eof()
        return resp

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/api/speech/tts", self.ws)
        app.router.add_get("/api/speech/asr", self.ws)
        app.router.add_post("/api/post/speech/tts", self.rest)
        return app


# -- scenarios: one client session each, checked ------------------------------------------------------

Scenario = Callable[[aiohttp.ClientSession, str, int], Awaitable[None]]


async def tts_rest(http: aiohttp.ClientSession, base: str, frames: int) -> None:
    """ElevenLabs HTTP streaming TTS, pcm_48000 (no transcoding): one body chunk per Gradium frame."""
    url = f"{base}/v1/text-to-speech/{VOICE}/stream"
    body = orjson.dumps({"text": "Hello world.", "model_id": "eleven_flash_v2_5"})
    async with http.post(url, params={"output_format": "pcm_48000"}, data=body,
                         headers={"xi-api-key": API_KEY, "content-type": "application/json"}) as r:
        n = len(await r.read())
    assert r.status == 200 and n == frames * FRAME[48000], (r.status, n)


async def tts_ws(http: aiohttp.ClientSession, base: str, frames: int) -> None:
    """ElevenLabs `stream-input`, pcm_24000: one `audio` JSON message per Gradium frame."""
    url = f"ws{base[4:]}/v1/text-to-speech/{VOICE}/stream-input"
    params = {"model_id": "eleven_flash_v2_5", "output_format": "pcm_24000"}
    n = 0
    async with http.ws_connect(url, params=params, headers={"xi-api-key": API_KEY}, **WS_OPTS) as ws:
        for m in ('{"text":" "}', '{"text":"Hello world. "}', '{"text":""}'):
            await ws.send_str(m)
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT and '"audio"' in msg.data and '"audio":null' not in msg.data:
                n += 1
    assert n == frames, n


async def cartesia_ws(http: aiohttp.ClientSession, base: str, frames: int) -> None:
    """Cartesia `/tts/websocket`, 2 contexts on one socket (one shared Gradium socket): `chunk` messages."""
    gen = {"model_id": "sonic-3", "voice": {"mode": "id", "id": CARTESIA_VOICE}, "language": "en",
           "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 24000}}
    ids = ["c0", "c1"]
    done: set[str] = set()
    n = 0
    headers = {"X-API-Key": API_KEY, "Cartesia-Version": "2026-03-01"}
    async with http.ws_connect(f"ws{base[4:]}/tts/websocket", headers=headers, **WS_OPTS) as ws:
        for c in ids:
            await ws.send_str(orjson.dumps({**gen, "context_id": c, "transcript": "Hello world. ",
                                            "continue": False}).decode())
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            data = orjson.loads(msg.data)
            if data.get("type") == "chunk":
                n += 1
            elif data.get("type") == "done":
                done.add(data["context_id"])
                if done == set(ids):
                    await ws.close()
    assert n == frames * len(ids), n


async def stt_ws(http: aiohttp.ClientSession, base: str, frames: int) -> None:
    """Deepgram live, linear16 16 kHz: one `Results` per Gradium `text` message (and a `step` each)."""
    params = {"model": "nova-3", "encoding": "linear16", "sample_rate": "16000", "interim_results": "true"}
    n = 0
    async with http.ws_connect(f"ws{base[4:]}/v1/listen", params=params,
                               headers={"Authorization": f"Token {API_KEY}"}, **WS_OPTS) as ws:
        await ws.send_bytes(bytes(2560))
        await ws.send_str('{"type":"CloseStream"}')
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT and '"Results"' in msg.data:
                n += 1
    assert n >= frames, n


async def stt_in(http: aiohttp.ClientSession, base: str, frames: int) -> None:
    """Deepgram live, linear16 16 kHz, the other way: `frames` binary audio frames from the client, each
    sent on to Gradium as an `audio` message (one word comes back)."""
    STUB.words = 1
    params = {"model": "nova-3", "encoding": "linear16", "sample_rate": "16000"}
    chunk = bytes(2560)
    try:
        async with http.ws_connect(f"ws{base[4:]}/v1/listen", params=params,
                                   headers={"Authorization": f"Token {API_KEY}"}, **WS_OPTS) as ws:
            for _ in range(frames):
                await ws.send_bytes(chunk)
            await ws.send_str('{"type":"CloseStream"}')
            n = sum([1 async for msg in ws if msg.type is aiohttp.WSMsgType.TEXT and '"Results"' in msg.data])
    finally:
        STUB.words = None
    assert n >= 1, n


SCENARIOS: dict[str, tuple[Scenario, int]] = {  # name -> (session, frames per session counted per frame)
    "tts_rest": (tts_rest, 1),
    "tts_ws": (tts_ws, 1),
    "cartesia_ws": (cartesia_ws, 2),
    "stt_ws": (stt_ws, 1),
    "stt_in": (stt_in, 1),
}


# -- harness ----------------------------------------------------------------------------------------


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def _batch(http: aiohttp.ClientSession, base: str, fn: Scenario, sessions: int) -> None:
    for _ in range(sessions):
        await fn(http, base, STUB.frames)


STUB = Stub()


async def measure(names: list[str], small: int, big: int, sessions: int, reps: int,
                  only: tuple[int, int] | None) -> dict[str, dict[str, float]]:
    from gateway.app import create_app
    from gateway.config import Settings

    stub_runner, stub_url = await _serve(STUB.app())
    gw_runner, base = await _serve(create_app(Settings.model_validate({"gradium": {"base_url": f"{stub_url}/api"}})))
    results: dict[str, dict[str, float]] = {}
    try:
        async with aiohttp.ClientSession() as http:
            for name in names:
                fn, per = SCENARIOS[name]
                if only is not None:  # one batch, for an external counter (valgrind)
                    STUB.frames, n = only
                    await _batch(http, base, fn, 2)  # warm-up: imports, pools
                    await _batch(http, base, fn, n)
                    continue
                STUB.frames = big
                await _batch(http, base, fn, 3)  # warm-up
                costs: list[float] = []
                for _ in range(reps):
                    spent = {}
                    for frames in (small, big):
                        STUB.frames = frames
                        t = time.process_time()
                        await _batch(http, base, fn, sessions)
                        spent[frames] = time.process_time() - t
                    costs.append((spent[big] - spent[small]) / (sessions * (big - small) * per))
                results[name] = {"us_per_frame": statistics.median(costs) * 1e6,
                                 "us_min": min(costs) * 1e6, "us_max": max(costs) * 1e6}
    finally:
        await gw_runner.cleanup()
        await stub_runner.cleanup()
    return results


def _valgrind(tool: str, name: str, frames: int, sessions: int) -> float:
    """Run one batch of `name` under valgrind; its total instructions (callgrind) or blocks (dhat)."""
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "out")
        env = dict(os.environ, PYTHONHASHSEED="0")  # the same dict layouts in every run
        argv = ["valgrind", f"--tool={tool}"]
        if tool == "callgrind":
            argv += [f"--callgrind-out-file={out}"]
        else:
            env["PYTHONMALLOC"] = "malloc"
            argv += [f"--dhat-out-file={out}"]
        argv += [sys.executable, __file__, "--scenario", name, "--once", f"{frames},{sessions}"]
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
        if tool == "callgrind":
            m = re.search(r"Collected\s*:\s*([\d,]+)", proc.stderr) or re.search(r"refs:\s*([\d,]+)", proc.stderr)
        else:
            m = re.search(r"Total:\s*[\d,]+ bytes in ([\d,]+) blocks", proc.stderr)
        if m is None:
            raise SystemExit(f"could not read valgrind's total:\n{proc.stderr[-2000:]}")
        return float(m.group(1).replace(",", ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    ap.add_argument("--tool", choices=["cpu", "callgrind", "dhat"], default="cpu")
    ap.add_argument("--small", type=int, default=10, help="Gradium frames per session, small batch")
    ap.add_argument("--big", type=int, default=210, help="Gradium frames per session, big batch")
    ap.add_argument("--sessions", type=int, default=10, help="sessions per batch")
    ap.add_argument("--reps", type=int, default=7, help="small/big batch pairs (cpu)")
    ap.add_argument("--once", help=argparse.SUPPRESS)  # frames,sessions: one batch (under valgrind)
    args = ap.parse_args()
    names = args.scenario or list(SCENARIOS)
    from gateway.observability import configure_logging

    configure_logging("warning", stream=io.StringIO())  # no log line per session in the figures
    if args.once:
        frames, sessions = (int(x) for x in args.once.split(","))
        asyncio.run(measure(names, 0, 0, 0, 0, (frames, sessions)))
        return
    import gateway

    print(f"gateway from {os.path.dirname(gateway.__file__)}; frames {args.small} -> {args.big}, "
          f"{args.sessions} sessions per batch")
    if args.tool == "cpu":
        for name, r in asyncio.run(measure(names, args.small, args.big, args.sessions, args.reps, None)).items():
            print(f"{name:12s} cpu {r['us_per_frame']:7.1f} us/frame  (min {r['us_min']:.1f}, max {r['us_max']:.1f})")
        return
    unit = "instructions" if args.tool == "callgrind" else "blocks"
    for name in names:
        per = SCENARIOS[name][1]
        lo = _valgrind(args.tool, name, args.small, args.sessions)
        hi = _valgrind(args.tool, name, args.big, args.sessions)
        per_frame = (hi - lo) / (args.sessions * (args.big - args.small) * per)
        print(f"{name:12s} {args.tool} {per_frame:10.1f} {unit}/frame")


if __name__ == "__main__":
    main()
