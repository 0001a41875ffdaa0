"""`stt_segments`: Gradium STT messages -> transcript segment events (Deepgram live and alike).

Events: `results` (interim and final transcript of the current segment), `speech_started`,
`utterance_end` and, at the end, `metadata`. Their shapes are in the mapping's `render` templates;
this module only decides *when*:

- interim: every new word while `interim_results` is on;
- final with `speech_final`: Gradium's semantic VAD says the speaker is done (inactivity
  probability at the chosen horizon reaches the threshold), unless endpointing is off. Gradium's
  words trail the audio by `delay_in_frames`, so the turn's last words are not here yet when the
  VAD fires: the transform asks the runtime to send Gradium a `flush` (a `send_gradium` event) and
  finalizes when that flush's `flushed` comes back with every word of the turn;
- final with `from_finalize`: the answer to a client `Finalize` (Gradium `flush` -> `flushed`),
  sent even when empty, because clients wait for it;
- final at the end of input, then `metadata`.
"""

from __future__ import annotations

import hashlib
from typing import Any

from gateway.mapping.transforms.base import Event, EventTransform, Options, SessionInfo, register, send_gradium
from gateway.upstream import protocol as gradium

SENTENCE_END = (".", "?", "!")
_STEP = gradium.STEP
_PUNCT = ".,?!;:\"'"


class SegmentOptions(Options):
    interim_results: bool = False
    endpointing: bool = True
    vad_horizon_s: float = 0.5
    vad_threshold: float = 0.5
    vad_events: bool = False
    utterance_end_ms: int | None = None
    punctuate: bool = False
    smart_format: bool = False
    max_segment_s: float = 8.0
    channels: int = 1
    # the `metadata` event's sha256 of the client's audio; a route that does not render it turns it off
    # (hashing is the dearest part of a client audio chunk's path after its base64)
    sha256: bool = True


class Word:
    __slots__ = ("_dict", "_dict_end", "_start_3", "end", "punctuated", "start", "text")

    def __init__(self, raw: str, start: float, capitalize: bool) -> None:
        self.text = raw.strip(_PUNCT).lower() or raw.lower()
        self.punctuated = raw[:1].upper() + raw[1:] if capitalize else raw
        self.start = start
        self.end = start
        self._dict: dict[str, Any] | None = None
        self._dict_end = start
        self._start_3: float | None = None  # round(start, 3), once (a round costs ~3.5 k instructions)

    def as_dict(self) -> dict[str, Any]:
        """The word as events carry it (read-only for them): built once, not once per interim result
        that repeats it, and again only if its `end` moved since."""
        d = self._dict
        if d is None or self._dict_end != self.end:
            self._dict_end = self.end
            if self._start_3 is None:
                self._start_3 = round(self.start, 3)
            self._dict = d = {
                "text": self.text,
                "punctuated": self.punctuated,
                "start": self._start_3,
                "end": round(self.end, 3),
                "confidence": 0.99,
            }
        return d


@register
class SttSegments(EventTransform):
    name = "stt_segments"
    Options = SegmentOptions
    EVENTS = {
        "results": frozenset({"transcript", "confidence", "words", "is_final", "speech_final", "from_finalize",
                              "start", "duration", "channel_index"}),
        "speech_started": frozenset({"timestamp", "channel_index"}),
        "utterance_end": frozenset({"last_word_end", "channel_index"}),
        "metadata": frozenset({"sha256", "duration", "channels"}),
    }

    def __init__(self, info: SessionInfo, options: SegmentOptions) -> None:  # type: ignore[override]
        super().__init__(info, options)
        self.o = options
        self.punctuate = options.punctuate or options.smart_format
        self.words: list[Word] = []  # current (not yet final) segment
        self.segment_start = 0.0
        self._start_rounded = (self.segment_start, 0.0)  # (segment_start, round(segment_start, 3))
        self.clock = 0.0  # seconds of audio Gradium has processed
        self.sentence_start = True
        self.in_speech = False
        self.last_word_end: float | None = None
        self.utterance_open = False
        self.speech_since_eot = False
        self.eot_flush: str | None = None  # id of the end-of-turn flush in flight
        self.eot_time = 0.0  # audio time when the VAD called the end of the turn
        self.eot_later: list[float] = []  # later turn ends seen while that flush was in flight
        self.eot_count = 0
        self.sha = hashlib.sha256() if options.sha256 else None
        self.audio_bytes = 0
        self.inactivity = gradium.Inactivity(options.vad_horizon_s).read
        # read once per `step` (every 80 ms): plain attributes, not the options model's
        self.vad_threshold = options.vad_threshold
        self.endpointing = options.endpointing
        self.max_segment_s = options.max_segment_s
        self.utterance_end_s = options.utterance_end_ms / 1000 if options.utterance_end_ms else None

    # -- helpers -------------------------------------------------------------------------------

    def _results(
        self, *, is_final: bool, speech_final: bool = False, from_finalize: bool = False, until: float | None = None
    ) -> Event:
        """The current segment; with `until`, only its words that started before that time (the rest
        belong to the next turn: audio sent faster than real time is already recognized)."""
        seg, rest = self.words, []
        if until is not None:
            seg = [w for w in self.words if w.start < until]
            rest = self.words[len(seg):]
        words = [w.as_dict() for w in seg]
        key = "punctuated" if self.punctuate else "text"
        transcript = " ".join(w[key] for w in words)
        last_end = seg[-1].end if seg else 0.0
        end = max(last_end, until) if until is not None else max(self.clock, last_end)
        if self.segment_start is not self._start_rounded[0]:  # a segment's start, rounded once, not per result
            self._start_rounded = (self.segment_start, round(self.segment_start, 3))
        fields = {
            "transcript": transcript,
            "confidence": 0.99 if words else 0.0,
            "words": words,
            "is_final": is_final,
            "speech_final": speech_final,
            "from_finalize": from_finalize,
            "start": self._start_rounded[1],
            "duration": round(max(0.0, end - self.segment_start), 3),
            "channel_index": [0, self.o.channels],
        }
        if is_final:
            self.segment_start = end
            if seg:
                self.last_word_end = seg[-1].end
                self.utterance_open = not rest
            self.words = rest
        return ("results", fields)

    # -- Gradium -> events -----------------------------------------------------------------------

    def on_gradium(self, msg: dict[str, Any]) -> list[Event]:
        kind = msg.get("type")
        if kind == _STEP:  # first, and here rather than in a method: one per 80 ms frame, most messages
            total = msg.get("total_duration_s")
            if total is not None:
                total = float(total)
                if total > self.clock:  # max(clock, total), with no call
                    self.clock = total
            events: list[Event] = []
            if not (self.inactivity(msg) or 0.0) >= self.vad_threshold:
                self.speech_since_eot = True  # most steps: speech, or silence too short to be a turn's end
            elif self.speech_since_eot and self.endpointing:
                self.speech_since_eot = False
                if self.eot_flush is not None:
                    self.eot_later.append(self.clock)  # finalized when the flush in flight comes back
                else:
                    self.eot_count += 1
                    self.eot_flush = f"eot-{self.eot_count}"
                    self.eot_time = self.clock
                    events.append(send_gradium(gradium.flush(self.eot_flush)))
            if self.words and self.eot_flush is None and self.clock - self.segment_start >= self.max_segment_s:
                events.append(self._results(is_final=True))
            if (
                self.utterance_end_s
                and self.utterance_open
                and not self.words
                and self.last_word_end is not None
                and self.clock - self.last_word_end >= self.utterance_end_s
            ):
                self.utterance_open = False
                events.append(("utterance_end", {"last_word_end": round(self.last_word_end, 3),
                                                 "channel_index": [0, 1]}))
            return events
        if kind == gradium.TEXT:
            return self._on_word(str(msg.get("text") or ""), float(msg.get("start_s") or self.clock))
        if kind == gradium.END_TEXT:
            if self.words and msg.get("stop_s") is not None:
                self.words[-1].end = max(self.words[-1].start, float(msg["stop_s"]))
            return []
        if kind == gradium.FLUSHED:
            if self.eot_flush is not None and msg.get("flush_id") == self.eot_flush:
                self.eot_flush = None
                # turns the VAD ended while this flush was out (audio sent faster than real time)
                # are complete too: every word sent before the flush is here now
                ends, self.eot_later = [self.eot_time, *self.eot_later], []
                events: list[Event] = []
                for end in ends:
                    if self.words and self.words[0].start < end:
                        self.in_speech = bool(self.words[-1].start >= end)
                        events.append(self._results(is_final=True, speech_final=True, until=end))
                return events
            return [self._results(is_final=True, from_finalize=True)]
        if kind == gradium.END_OF_STREAM:
            events = [self._results(is_final=True, speech_final=bool(self.words))] if self.words else []
            events.append(("metadata", {
                "sha256": self.sha.hexdigest() if self.sha is not None else None,
                "duration": round(max(self.clock, self.audio_bytes and self.clock), 3),
                "channels": self.o.channels,
            }))
            return events
        return []

    def _on_word(self, raw: str, start: float) -> list[Event]:
        if not raw.strip():
            return []
        events: list[Event] = []
        if not self.words and not self.in_speech:
            self.in_speech = True
            if self.o.vad_events:
                events.append(("speech_started", {"timestamp": round(start, 3), "channel_index": [0, 1]}))
        word = Word(raw.strip(), start, self.sentence_start and self.punctuate)
        self.sentence_start = raw.rstrip().endswith(SENTENCE_END)
        self.words.append(word)
        self.utterance_open = False
        if self.o.interim_results:
            events.append(self._results(is_final=False))
        return events

    def on_action(self, action: str, fields: dict[str, Any]) -> list[Event]:
        if action == "audio":
            return self.on_audio(fields.get("audio") or b"")
        return []

    def on_audio(self, chunk: bytes) -> list[Event]:
        if self.sha is not None:
            self.sha.update(chunk)
        self.audio_bytes += len(chunk)
        return []
