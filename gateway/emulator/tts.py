"""TTS emulation: streamed text in, Gradium `text` and `audio` messages out.

Transport-free: the WebSocket session and the REST endpoint iterate the same generators and only
differ in framing. Generators are lazy, so a long text is rendered word by word as the transport
sends, never as one clip.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np

from gateway.audio.formats import AudioFormat
from gateway.emulator import tones
from gateway.emulator.audio_io import AudioEncoder
from gateway.emulator.library import Rule, rewrite
from gateway.emulator.protocol import TTS_FRAME_S
from gateway.emulator.settings import EmulatorSettings
from gateway.emulator.voices import Voice
from gateway.upstream import protocol as wire

Message = dict[str, Any]


class TtsEngine:
    def __init__(self, fmt: AudioFormat, voice: Voice | None = None, rewrites: tuple[Rule, ...] = ()) -> None:
        """`voice`: whose tones (`Voice.tone_s`); `rewrites`: the setup's pronunciation dictionary."""
        self._encoder = AudioEncoder(fmt)
        self.sample_rate = self._encoder.sample_rate
        self.frame_size = round(self.sample_rate * TTS_FRAME_S)
        self._synth = tones.ToneSynth(self.sample_rate, tone_s=voice.tone_s if voice else tones.TONE_S)
        self._rewrites = rewrites
        self._pending_text = ""
        self._seen_text = False
        self._chunks: list[np.ndarray] = []
        self._buffered = 0
        self._emitted = 0  # samples already sent, the clock of `start_s`/`stop_s`
        self._unsent_start: float | None = None  # codec held back output for earlier frames
        self.characters = 0

    # -- input -----------------------------------------------------------------------------------

    def feed_text(self, text: str) -> Iterator[Message]:
        """Render the words this message completes.

        Gradium joins consecutive text messages with one space, so the end of a message always
        ends a word; only a tag cut in half (`<break time=` ... `/>`) is held for the next one.
        """
        self.characters += len(text)
        self._pending_text += (" " if self._seen_text else "") + text
        self._seen_text = True
        cut = len(self._pending_text)
        open_tag = self._pending_text.rfind("<")
        if open_tag >= 0 and ">" not in self._pending_text[open_tag:]:
            cut = open_tag
        ready, self._pending_text = self._pending_text[:cut], self._pending_text[cut:]
        # Rules apply to whole words, and a message always ends a word (the cut keeps only a half tag)
        yield from self._render(rewrite(ready, self._rewrites) if self._rewrites else ready)

    def flush(self) -> Iterator[Message]:
        """Everything received so far goes out now, the last frame padded with silence."""
        pending = self._pending_text
        yield from self._render(rewrite(pending, self._rewrites) if self._rewrites else pending)
        self._pending_text = ""
        yield from self._pad()

    def finish(self) -> Iterator[Message]:
        yield from self.flush()
        tail = self._encoder.flush()
        if tail:
            start = self._unsent_start if self._unsent_start is not None else self._clock()
            self._unsent_start = None
            yield self._audio(tail, start, self._clock())

    # -- rendering -------------------------------------------------------------------------------

    def _render(self, text: str) -> Iterator[Message]:
        for item in tones.parse(text):
            if isinstance(item, tones.Token):
                audio, timing = self._synth.word(item.spoken)
                # the word as written, like Gradium; the audio spells `spoken`
                yield wire.timed_text(item.original, timing.start_s, timing.stop_s)
                yield from self._push(audio)
            elif isinstance(item, tones.Pause):
                yield from self._push(self._synth.pause(item.seconds))
            else:
                yield from self._pad()

    def _push(self, pcm: np.ndarray) -> Iterator[Message]:
        self._chunks.append(pcm)
        self._buffered += len(pcm)
        if self._buffered < self.frame_size:
            return
        pending = np.concatenate(self._chunks)
        whole = len(pending) - len(pending) % self.frame_size
        rest = pending[whole:]
        # State first: a transport may stop iterating mid-way (a failed or dropped stream).
        self._chunks = [rest] if len(rest) else []
        self._buffered = len(rest)
        for i in range(0, whole, self.frame_size):
            yield from self._emit(pending[i : i + self.frame_size])

    def _pad(self) -> Iterator[Message]:
        if self._buffered:
            silence = np.zeros(self.frame_size - self._buffered, dtype=np.int16)
            yield from self._push(silence)

    def _clock(self) -> float:
        return self._emitted / self.sample_rate

    def _emit(self, frame: np.ndarray) -> Iterator[Message]:
        start = self._clock()
        self._emitted += len(frame)
        data = self._encoder.encode(frame)
        if not data:
            # Opus and wav encoders may hold a frame back; its time goes with the next bytes.
            if self._unsent_start is None:
                self._unsent_start = start
            return
        if self._unsent_start is not None:
            start, self._unsent_start = self._unsent_start, None
        yield self._audio(data, start, self._clock())

    @staticmethod
    def _audio(data: bytes, start_s: float, stop_s: float) -> Message:
        return wire.timed_audio(data, start_s, stop_s)  # raw bytes: `wire.dumps` writes them as base64


class Pacer:
    """Holds one request's TTS audio: `first_audio_delay_s` before its first audio, then
    `realtime_factor` wall seconds per audio second (0: no holding)."""

    def __init__(self, realtime_factor: float, first_audio_delay_s: float = 0.0) -> None:
        self._factor = realtime_factor
        self._first_delay = first_audio_delay_s
        self._t0: float | None = None

    @classmethod
    def for_settings(cls, settings: EmulatorSettings) -> Pacer:
        return cls(settings.tts_realtime_factor, settings.tts_first_audio_delay_s)

    async def wait(self, msg: Message) -> None:
        if msg["type"] != wire.AUDIO:
            return
        loop = asyncio.get_running_loop()
        if self._t0 is None and self._first_delay > 0:
            await asyncio.sleep(self._first_delay)
            self._t0 = loop.time() - msg["start_s"] * self._factor
            return
        if self._factor <= 0:
            # As fast as possible, but one request must not starve the others on the loop.
            await asyncio.sleep(0)
            return
        if self._t0 is None:
            self._t0 = loop.time() - msg["start_s"] * self._factor
        delay = self._t0 + msg["start_s"] * self._factor - loop.time()
        await asyncio.sleep(max(0.0, delay))
