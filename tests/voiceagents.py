"""Audio frames for driving LiveKit and Pipecat STT plugins standalone (no media server)."""

from __future__ import annotations

import asyncio
from typing import Any

RATE = 16000


def lk_frames(pcm: bytes, rate: int = RATE, ms: int = 50) -> list[Any]:
    """s16le mono `pcm` as LiveKit `rtc.AudioFrame`s of `ms` each."""
    from livekit import rtc

    step = rate * 2 * ms // 1000
    return [rtc.AudioFrame(pcm[i : i + step], rate, 1, len(pcm[i : i + step]) // 2)
            for i in range(0, len(pcm), step)]


async def lk_push_paced(stream: Any, pcm: bytes, speedup: float = 4.0, ms: int = 50, rate: int = RATE) -> None:
    """Feed a LiveKit STT stream `speedup` times faster than real time, then end its input."""
    for f in lk_frames(pcm, rate, ms):
        stream.push_frame(f)
        await asyncio.sleep(ms / 1000 / speedup)
    stream.end_input()


async def lk_events(stream: Any, feeder: asyncio.Task[None], timeout_s: float = 60.0) -> list[Any]:
    """Every event of a LiveKit STT stream, to its end, then its `feeder` (`lk_push_paced`) awaited; a stream
    the gateway never ends fails the test after `timeout_s` with the events it got (not at pytest-timeout's
    600 s, with none), its feeder cancelled."""
    import pytest

    events: list[Any] = []
    try:
        async with asyncio.timeout(timeout_s):
            async for ev in stream:
                events.append(ev)
    except TimeoutError:
        feeder.cancel()
        pytest.fail(f"the stream did not end; events so far: {[ev.type for ev in events]}")
    await feeder
    return events


def pc_audio_frames(pcm: bytes, ms: int = 20, speedup: float = 4.0, rate: int = RATE) -> list[Any]:
    """s16le mono `pcm` as Pipecat input frames, each followed by a pause (`speedup` x real time)."""
    from pipecat.frames.frames import InputAudioRawFrame
    from pipecat.tests.utils import SleepFrame

    out: list[Any] = []
    step = rate * 2 * ms // 1000
    for i in range(0, len(pcm), step):
        out.append(InputAudioRawFrame(audio=pcm[i : i + step], sample_rate=rate, num_channels=1))
        out.append(SleepFrame(sleep=ms / 1000 / speedup))
    return out


def pc_params(rate: int = RATE) -> Any:
    from pipecat.pipeline.task import PipelineParams

    return PipelineParams(audio_in_sample_rate=rate, audio_out_sample_rate=24000)
