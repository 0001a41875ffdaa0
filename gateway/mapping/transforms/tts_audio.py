"""`tts_audio`: Gradium TTS audio/text messages -> `audio`, `complete` and `end` events.

Audio is transcoded in the stream from what Gradium was asked for to what the client wants
(passed through untouched when they match: even the base64 string is reused). Gradium's word
timestamps become character alignment (`alignment`), either relative to each chunk (ElevenLabs
WebSocket), running from the start (NDJSON), or collected for one JSON body.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

from gateway.audio.leg import AudioLeg
from gateway.mapping.transforms.base import Event, EventTransform, Options, SessionInfo, register
from gateway.upstream import protocol as gradium


class TtsAudioOptions(Options):
    encoding: Literal["bytes", "base64"] = "bytes"
    alignment: Literal["none", "chunk", "absolute"] = "none"
    # which times the route renders: seconds (`starts_s`, `ends_s`), milliseconds (`starts_ms`,
    # `durations_ms`) or both; built for every audio chunk, so only what is shown
    alignment_units: Literal["s", "ms", "both"] = "both"
    collect: bool = False  # one `complete` event with all audio and alignment at the end
    words: bool = False  # also emit a `words` event per Gradium text message


class CharTimeline:
    """Characters with start/end times built from Gradium's per-word timestamps.

    Each word's span is shared evenly by its characters; the gap before a word becomes one space
    character, as ElevenLabs alignments include spaces.
    """

    __slots__ = ("chars", "ends", "last_stop", "lead_space", "sent", "starts")

    def __init__(self) -> None:
        self.chars: list[str] = []
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.sent = 0
        self.last_stop = 0.0
        self.lead_space = False  # a space before the first word too (the text goes on from another request)

    def add_word(self, text: str, start: float, stop: float) -> None:
        if not text:
            return
        stop = max(stop, start)
        if self.chars or self.lead_space:
            self.lead_space = False
            gap_start = min(self.last_stop, start)
            self.chars.append(" ")
            self.starts.append(gap_start)
            self.ends.append(start)
        step = (stop - start) / len(text)
        for i, ch in enumerate(text):
            self.chars.append(ch)
            self.starts.append(start + i * step)
            self.ends.append(start + (i + 1) * step)
        self.last_stop = stop

    def take_until(self, t: float | None) -> tuple[int, int]:
        """Indexes [a, b) of unsent characters starting before `t` (all of them when t is None)."""
        a = self.sent
        b = a
        n = len(self.chars)
        while b < n and (t is None or self.starts[b] < t):
            b += 1
        self.sent = b
        return a, b

    def alignment(self, a: int, b: int, origin: float, units: str = "both") -> dict[str, Any] | None:
        if a == b:
            return None
        starts = self.starts[a:b]
        ends = self.ends[a:b]
        out: dict[str, Any] = {"chars": self.chars[a:b]}
        if units != "ms":
            out["starts_s"] = [round(s, 3) for s in starts]
            out["ends_s"] = [round(e, 3) for e in ends]
        if units != "s":
            # one loop, not two comprehensions (each a function call in 3.11): a chunk has 1-3 characters
            starts_ms = []
            durations_ms = []
            for s, e in zip(starts, ends, strict=True):
                starts_ms.append(max(0, round((s - origin) * 1000)))
                durations_ms.append(max(0, round((e - s) * 1000)))
            out["starts_ms"] = starts_ms
            out["durations_ms"] = durations_ms
        return out


@register
class TtsAudio(EventTransform):
    name = "tts_audio"
    Options = TtsAudioOptions
    EVENTS = {
        "audio": frozenset({"audio", "audio_b64", "start_s", "stop_s", "alignment"}),  # `encoding` picks one
        "complete": frozenset({"audio", "audio_b64", "alignment"}),  # option `collect`
        "words": frozenset({"text", "start_s", "stop_s"}),  # option `words`
        "end": frozenset(),
    }

    def __init__(self, info: SessionInfo, options: TtsAudioOptions) -> None:  # type: ignore[override]
        super().__init__(info, options)
        assert info.gradium_out is not None and info.audio_out is not None
        self.opts = options
        self.leg = AudioLeg(info.gradium_out, info.audio_out)
        self.heavy = self.leg.heavy
        self.timeline = CharTimeline()
        self.audio_clock = 0.0  # stop time of the last Gradium audio chunk handed out
        self.chunk_origin = 0.0
        self.collected: list[bytes] = []

    def _audio_event(
        self, data: bytes | None, b64: str | None, start: float, stop: float, *, last: bool = False
    ) -> Event:
        fields: dict[str, Any] = {"start_s": start, "stop_s": stop}
        if self.opts.encoding == "base64":
            fields["audio_b64"] = b64 if b64 is not None else base64.b64encode(data or b"").decode()
        else:
            fields["audio"] = data or b""
        alignment = self.opts.alignment
        if alignment != "none":
            tl = self.timeline
            n = tl.sent
            if not last and (n == len(tl.chars) or tl.starts[n] >= stop):
                fields["alignment"] = None  # what take_until + alignment give for no new character, without the calls
            else:
                a, b = tl.take_until(None if last else stop)
                origin = start if alignment == "chunk" else 0.0
                fields["alignment"] = tl.alignment(a, b, origin, self.opts.alignment_units)
        return ("audio", fields)

    def prime(self) -> None:
        self.leg.transcoder.prime()

    def on_action(self, action: str, fields: dict[str, Any]) -> list[Event]:
        if action == "continue":  # this request goes on from an earlier one: its first word follows a space
            self.timeline.lead_space = True
        return []

    def on_gradium(self, msg: dict[str, Any]) -> list[Event]:
        kind = msg.get("type")
        if kind == gradium.AUDIO:
            start = float(msg.get("start_s") or self.audio_clock)
            stop = float(msg.get("stop_s") or start)
            self.audio_clock = max(self.audio_clock, stop)
            if self.leg.transcoder.passthrough:
                if self.opts.collect:
                    self.collected.append(gradium.audio_bytes(msg))
                    return []
                b64 = msg.get("audio") or ""
                if not b64:
                    return []
                if self.opts.encoding == "base64":  # Gradium's base64 is the client's
                    return [self._audio_event(None, b64, start, stop)]
                return [self._audio_event(gradium.audio_bytes(msg), None, start, stop)]
            out = self.leg.from_gradium(msg)
            if self.opts.collect:
                self.collected.append(out)
                return []
            if not out:
                return []
            return [self._audio_event(out, None, start, stop)]
        if kind == gradium.TEXT:
            start = float(msg.get("start_s") or 0.0)
            stop = float(msg.get("stop_s") or start)
            self.timeline.add_word(str(msg.get("text") or ""), start, stop)
            if self.opts.words:
                return [("words", {"text": msg.get("text"), "start_s": start, "stop_s": stop})]
            return []
        if kind == gradium.END_OF_STREAM:
            return self._finish()
        return []

    def _finish(self) -> list[Event]:
        events: list[Event] = []
        tail = self.leg.tail()
        if self.opts.collect:
            self.collected.append(tail)
            audio = b"".join(self.collected)
            fields: dict[str, Any] = {"audio": audio, "audio_b64": base64.b64encode(audio).decode()}
            if self.opts.alignment != "none":
                a, b = self.timeline.take_until(None)
                fields["alignment"] = self.timeline.alignment(a, b, 0.0, self.opts.alignment_units)
            events.append(("complete", fields))
        elif tail or self.timeline.sent < len(self.timeline.chars):
            # leftover codec frames, or words whose text arrived after their audio
            events.append(self._audio_event(tail, None, self.audio_clock, self.audio_clock, last=True))
        events.append(("end", {}))
        return events
