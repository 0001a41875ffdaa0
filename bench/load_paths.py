"""Sessions for the realistic load benchmark (`bench/load.py`): TTS with a player's view of the audio.

A TTS session records when each audio chunk arrives and how much audio came before it. A player that
starts on the first chunk and plays in real time runs dry when a chunk arrives after the audio before
it has finished playing: that is an underrun. Inter-chunk gaps are the arrival gaps between chunks.
The STT sessions are `paths.stt_*` and `paths_elevenlabs.realtime_*` (paced at real time); `dg_empty` and
`el_empty` are STT sessions with no audio (what a session costs the gateway besides its frames).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp
import orjson
from paths import (
    API_KEY,
    MODEL_ID,
    STT_RATE,
    VOICE_ID,
    WS_OPTS,
    PathError,
    Trace,
    TtsInput,
    _closed_early,
    _texts,
    _ws_url,
    now,
)
from paths_elevenlabs import COMMIT

UNDERRUN_SLACK_S = 0.005  # a player's clock and the network are not that exact


@dataclass
class Playback:
    """Arrival times against audio time; `bytes_per_s` converts bytes to audio seconds."""

    bytes_per_s: float
    t_start: float
    first_ms: float = 0.0
    gaps_ms: list[float] = field(default_factory=list)
    underruns: int = 0
    _t_first: float = 0.0
    _t_last: float = 0.0
    _audio_s: float = 0.0

    def chunk(self, n_bytes: int) -> None:
        t = now()
        if not self._t_first:
            self._t_first = t
            self.first_ms = (t - self.t_start) * 1e3
        else:
            self.gaps_ms.append((t - self._t_last) * 1e3)
            if t - self._t_first > self._audio_s + UNDERRUN_SLACK_S:
                self.underruns += 1
        self._t_last = t
        self._audio_s += n_bytes / self.bytes_per_s

    def sample(self) -> dict[str, object]:
        if not self._t_first:
            raise PathError("no audio")
        return {"first_ms": self.first_ms, "gaps_ms": self.gaps_ms, "underruns": self.underruns,
                "audio_s": self._audio_s}


def _b64_len(s: str) -> int:
    return len(s) * 3 // 4 - s.count("=", -2)


async def tts_ws_gateway(http: aiohttp.ClientSession, base: str, inp: TtsInput, trace: Trace) -> dict[str, object]:
    url = f"{_ws_url(base)}/v1/text-to-speech/{VOICE_ID}/stream-input"
    params = {"model_id": MODEL_ID, "output_format": "pcm_24000"}
    async with http.ws_connect(url, params=params, headers={"xi-api-key": API_KEY}, **WS_OPTS) as ws:
        first, *rest = inp.ws_gateway_msgs
        await ws.send_str(first)
        play = Playback(48000, now())
        for m in rest:
            await ws.send_str(m)
        final = False
        async for raw in _texts(ws, trace):
            data = orjson.loads(raw)
            audio = data.get("audio") if isinstance(data, dict) else None
            if audio:
                play.chunk(_b64_len(audio))
            elif isinstance(data, dict) and data.get("isFinal"):
                final = True
            else:
                trace.append(f"recv: {raw[:200]}")
        if not final:
            raise _closed_early(ws, "isFinal", trace)
    return play.sample()


async def tts_ws_direct(http: aiohttp.ClientSession, base: str, inp: TtsInput, trace: Trace) -> dict[str, object]:
    async with http.ws_connect(f"{_ws_url(base)}/api/speech/tts", headers={"x-api-key": API_KEY}, **WS_OPTS) as ws:
        setup, *rest = inp.ws_direct_msgs
        await ws.send_str(setup)
        play = Playback(48000, now())
        for m in rest:
            await ws.send_str(m)
        final = False
        async for raw in _texts(ws, trace):
            data = orjson.loads(raw)
            kind = data.get("type")
            if kind == "audio":
                play.chunk(_b64_len(data["audio"]))
            elif kind == "end_of_stream":
                final = True
            elif kind not in ("text", "ready"):
                trace.append(f"recv: {raw[:200]}")
                if kind == "error":
                    raise PathError(f"error message: {raw[:300]}")
        if not final:
            raise _closed_early(ws, "end_of_stream", trace)
    return play.sample()


async def _rest_body(resp: aiohttp.ClientResponse, play: Playback) -> dict[str, object]:
    if resp.status != 200:
        raise PathError(f"HTTP {resp.status}: {(await resp.read())[:300]!r}")
    async for chunk in resp.content.iter_any():
        if chunk:
            play.chunk(len(chunk))
    return play.sample()


async def rest_mp3_gateway(http: aiohttp.ClientSession, base: str, inp: TtsInput, trace: Trace) -> dict[str, object]:
    url = f"{base}/v1/text-to-speech/{VOICE_ID}/stream"
    headers = {"xi-api-key": API_KEY, "content-type": "application/json"}
    play = Playback(128000 / 8, now())  # mp3_44100_128 is constant bit rate
    async with http.post(url, params={"output_format": "mp3_44100_128"}, data=inp.rest_gateway_body,
                         headers=headers) as r:
        return await _rest_body(r, play)


async def rest_direct(http: aiohttp.ClientSession, base: str, inp: TtsInput, trace: Trace) -> dict[str, object]:
    headers = {"x-api-key": API_KEY, "content-type": "application/json"}
    play = Playback(96000, now())  # pcm_48000
    async with http.post(f"{base}/api/post/speech/tts", data=inp.rest_direct_body, headers=headers) as r:
        return await _rest_body(r, play)


async def dg_empty(http: aiohttp.ClientSession, base: str, trace: Trace) -> dict[str, object]:
    """Deepgram live with no audio: connect, `CloseStream`, read until the close."""
    params = {"model": "nova-3", "encoding": "linear16", "sample_rate": str(STT_RATE), "interim_results": "true"}
    async with http.ws_connect(f"{_ws_url(base)}/v1/listen", params=params,
                               headers={"Authorization": f"Token {API_KEY}"}, **WS_OPTS) as ws:
        await ws.send_str('{"type":"CloseStream"}')
        async for raw in _texts(ws, trace):
            trace.append(f"recv: {raw[:200]}")
        if ws.close_code != 1000:
            raise _closed_early(ws, "a 1000 close", trace)
    return {}


async def el_empty(http: aiohttp.ClientSession, base: str, trace: Trace) -> dict[str, object]:
    """ElevenLabs realtime STT with no audio: connect, a commit, read until the `committed_transcript`."""
    params = {"model_id": "scribe_v2_realtime", "audio_format": f"pcm_{STT_RATE}", "commit_strategy": "manual",
              "language_code": "en"}
    async with http.ws_connect(f"{_ws_url(base)}/v1/speech-to-text/realtime", params=params,
                               headers={"xi-api-key": API_KEY}, **WS_OPTS) as ws:
        await ws.send_str(COMMIT)
        async for raw in _texts(ws, trace):
            if "committed_transcript" in raw:
                return {}
            trace.append(f"recv: {raw[:200]}")
    raise _closed_early(ws, "committed_transcript", trace)
