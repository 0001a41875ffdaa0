"""`turns`: Gradium STT messages -> turn-taking events (Deepgram Flux `/v2/listen`, Cartesia turns).

The turn logic lives here once; each mapping only gives the events its provider's shape. Event and
option names are stable (other dialects render them with their own templates).

Events, in the order a session sees them:

- `connected`: on Gradium's `ready` (first event of the session; option `connected`).
- `turn_start`: the first word of a turn arrived (the transcript is never empty). With
  `start_on: vad` it fires instead when the speech probability (1 - inactivity) reaches
  `start_threshold`, possibly with an empty transcript.
- `turn_update`: every `update_interval_s` of audio when no other event was sent; between turns too
  (empty transcript) when `idle_updates` is on.
- `eager_end`: the end-of-turn probability reached `eager_eot_threshold` (only when it is set).
- `turn_resumed`: speech (the VAD, or a new word) came back after an `eager_end`.
- `turn_end`: the end-of-turn probability reached `eot_threshold` (`trigger: model`; a threshold
  of 1.0 or more disables it), or `eot_timeout_ms` of audio passed without speech in a turn
  (`trigger: timeout`), or the client forced it (`control: force_end`, `trigger: manual`), or the
  input ended mid-turn (`trigger: close_trigger`). When eager ends are on and none was sent for
  this turn, an `eager_end` with the same words comes just before it; when the words changed since
  the `eager_end`, a `turn_resumed` comes first.
- `configured` / `configure_failed`: the answer to `control: configure`.
- `closed`: after Gradium's `end_of_stream` (and the last `turn_end`).

Fields of the turn events (`turn_*`, `eager_end`): `event` (the event name), `transcript`,
`words` (`[{text, punctuated, start, end, confidence}]`), `confidence` (mean of the words),
`turn_index` (0-based, bumped right after each `turn_end`), `end_of_turn_confidence` (the
inactivity probability at `vad_horizon_s`), `audio_window_start` / `audio_window_end` (seconds:
from the end of the previous turn to now, or to the end of this turn), `trigger` (`turn_end`
only). Every event, `connected` and `configured` included, carries `sequence_id` from one counter
starting at `sequence_start`. `configured` has `thresholds` (`eot_threshold`,
`eager_eot_threshold`, `eot_timeout_ms`), `keyterms`, `language_hints`; `configure_failed` has
`code` and `description`; `closed` has `duration` and `sha256` of the client audio.

Client controls (`do: control` inbound rules, fields):
- `{control: configure, thresholds: {eot_threshold?, eager_eot_threshold?, eot_timeout_ms?},
  keyterms?, language_hints?}`: omitted values stay; values outside `eot_range`, `eager_range`,
  `timeout_range_ms`, an eager threshold above the end threshold, or a `thresholds` that is not an
  object give `configure_failed`.
- `{control: force_end}`: end the current turn now (ignored between turns).

How Gradium's signals are used: `step` messages carry the semantic VAD (`inactivity_prob` per
horizon); the horizon nearest `vad_horizon_s` is the end-of-turn confidence. Gradium's words trail
the VAD by `delay_in_frames`, so when the VAD calls an (eager) end of turn the transform asks the
runtime to send Gradium a `flush` (a `send_gradium` event) and decides when that flush's `flushed`
returns with every word of the turn; words that started after the call belong to the next turn.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from gateway.mapping.transforms.base import (
    SEND_GRADIUM,
    Event,
    EventTransform,
    Options,
    SessionInfo,
    register,
    send_gradium,
)
from gateway.mapping.transforms.stt_segments import SENTENCE_END, Word
from gateway.upstream import protocol as gradium

_TURN_FIELDS = frozenset({"event", "transcript", "words", "confidence", "turn_index", "end_of_turn_confidence",
                          "audio_window_start", "audio_window_end", "sequence_id"})


class TurnOptions(Options):
    eot_threshold: float = 0.7
    eager_eot_threshold: float | None = None
    eot_timeout_ms: int = 5000
    vad_horizon_s: float = 0.5
    speech_threshold: float = 0.5  # inactivity below this counts as speech (timeout clock)
    start_on: Literal["word", "vad"] = "word"
    start_threshold: float = 0.5
    update_interval_s: float = 0.25
    idle_updates: bool = True
    punctuate: bool = True
    connected: bool = True
    sequence_start: int = 0
    close_trigger: str = "manual"
    eot_range: tuple[float, float] = (0.0, 1.0)
    eager_range: tuple[float, float] = (0.0, 1.0)
    timeout_range_ms: tuple[int, int] = (1, 600_000)


@dataclass(slots=True)
class _Flush:
    flush_id: str
    purpose: Literal["eager", "end"]
    at: float | None  # audio time of the call; None: every word so far
    trigger: str
    then_end: str | None = None  # eager flush in flight when the end threshold was crossed


@register
class Turns(EventTransform):
    name = "turns"
    Options = TurnOptions
    EVENTS = {
        "connected": frozenset({"sequence_id"}),
        **{name: _TURN_FIELDS for name in ("turn_start", "turn_update", "eager_end", "turn_resumed")},
        "turn_end": _TURN_FIELDS | {"trigger"},
        "configured": frozenset({"thresholds", "keyterms", "language_hints", "sequence_id"}),
        "configure_failed": frozenset({"code", "description", "sequence_id"}),
        "closed": frozenset({"duration", "sha256", "sequence_id"}),
    }

    def __init__(self, info: SessionInfo, options: TurnOptions) -> None:  # type: ignore[override]
        super().__init__(info, options)
        self.o = options
        self.eot = options.eot_threshold
        self.eager = options.eager_eot_threshold
        self.timeout_s = options.eot_timeout_ms / 1000
        self.inactivity = gradium.Inactivity(options.vad_horizon_s).read
        self.keyterms: list[Any] = []
        self.language_hints: list[Any] = []
        self.seq = options.sequence_start
        self.state: Literal["idle", "ongoing", "eager"] = "idle"
        self.words: list[Word] = []
        self.sentence_start = True
        self.turn_index = 0
        self.window_start = 0.0
        self.clock = 0.0
        self.p = 0.0  # end-of-turn confidence (inactivity probability at the chosen horizon)
        self.last_speech = 0.0
        self.pending: _Flush | None = None
        self.flushes = 0
        self.eager_time = 0.0
        self.eager_words: list[Word] | None = None
        self.eager_sent = False
        self.next_update = options.update_interval_s
        self.heard = False  # the VAD heard speech since the last turn ended
        self.sha = hashlib.sha256()

    # -- event helpers ---------------------------------------------------------------------------

    def _ev(self, name: str, fields: dict[str, Any]) -> Event:
        fields["sequence_id"] = self.seq
        self.seq += 1
        return (name, fields)

    def _turn_ev(self, name: str, words: list[Word], end: float | None = None, trigger: str | None = None) -> Event:
        ws = [w.as_dict() for w in words]
        key = "punctuated" if self.o.punctuate else "text"
        fields: dict[str, Any] = {
            "event": name,
            "transcript": " ".join(w[key] for w in ws),
            "words": ws,
            "confidence": round(sum(w["confidence"] for w in ws) / len(ws), 3) if ws else 0.0,
            "turn_index": self.turn_index,
            "end_of_turn_confidence": round(self.p, 4),
            "audio_window_start": round(self.window_start, 3),
            "audio_window_end": round(self.clock if end is None else max(end, self.window_start), 3),
        }
        if trigger is not None:
            fields["trigger"] = trigger
        self.next_update = self.clock + self.o.update_interval_s
        return self._ev(name, fields)

    def _flush(self, purpose: Literal["eager", "end"], trigger: str, at: float | None) -> Event:
        self.flushes += 1
        self.pending = _Flush(f"turn-{self.flushes}", purpose, at, trigger)
        return send_gradium(gradium.flush(self.pending.flush_id))

    def _turn_words(self) -> list[Word]:
        if self.pending is not None and self.pending.purpose == "end" and self.pending.at is not None:
            return [w for w in self.words if w.start < self.pending.at]
        return self.words

    @property
    def _eot_on(self) -> bool:
        return self.eot < 1.0

    # -- Gradium -> events -----------------------------------------------------------------------

    def on_gradium(self, msg: dict[str, Any]) -> list[Event]:
        kind = msg.get("type")
        if kind == gradium.STEP:
            return self._on_step(msg)
        if kind == gradium.TEXT:
            return self._on_word(str(msg.get("text") or ""), float(msg.get("start_s") or self.clock))
        if kind == gradium.END_TEXT:
            if self.words and msg.get("stop_s") is not None:
                self.words[-1].end = max(self.words[-1].start, float(msg["stop_s"]))
                self.last_speech = max(self.last_speech, self.words[-1].end)
            return []
        if kind == gradium.FLUSHED:
            return self._on_flushed(msg.get("flush_id"))
        if kind == gradium.READY:
            return [self._ev("connected", {})] if self.o.connected else []
        if kind == gradium.END_OF_STREAM:
            return self._on_close()
        return []

    def _on_word(self, raw: str, start: float) -> list[Event]:
        raw = raw.strip()
        if not raw:
            return []
        self.words.append(Word(raw, start, self.sentence_start and self.o.punctuate))
        self.sentence_start = raw.endswith(SENTENCE_END)
        self.last_speech = max(self.last_speech, start)
        if self.pending is not None:
            return []  # whose turn this word is in is decided when the flush returns
        if self.state == "idle":
            self.state = "ongoing"
            self.eager_sent = False
            return [self._turn_ev("turn_start", self.words)]
        if self.state == "eager" and start >= self.eager_time:
            return [self._resume()]
        return []

    def _on_step(self, msg: dict[str, Any]) -> list[Event]:
        total = msg.get("total_duration_s")
        if isinstance(total, int | float):
            self.clock = max(self.clock, float(total))
        p = self.inactivity(msg)
        if p is not None:
            self.p = p
        if self.p < self.o.speech_threshold:
            self.last_speech = self.clock
            self.heard = True
        events: list[Event] = []
        timed_out = self.clock - self.last_speech >= self.timeout_s
        if self.pending is not None:
            if self.pending.purpose == "eager" and self._eot_on and self.p >= self.eot:
                self.pending.then_end = "model"
        elif self.state == "idle":
            if self.o.start_on == "vad" and 1.0 - self.p >= self.o.start_threshold:
                self.state = "ongoing"
                self.eager_sent = False
                events.append(self._turn_ev("turn_start", self.words))
        elif self.state == "ongoing":
            if self._eot_on and self.p >= self.eot:
                events.append(self._flush("end", "model", self.clock))
            elif self.eager is not None and self.p >= self.eager and not self.eager_sent:
                events.append(self._flush("eager", "model", self.clock))
            elif timed_out:
                events.append(self._flush("end", "timeout", self.clock))
        elif self.state == "eager":
            if self.eager is not None and self.p < self.eager:
                events.append(self._resume())
            elif self._eot_on and self.p >= self.eot:
                events += self._end(self.words, [], "model", self.clock)
            elif timed_out:
                events += self._end(self.words, [], "timeout", self.clock)
        if not any(e[0] != SEND_GRADIUM for e in events) and self.clock >= self.next_update:
            while self.next_update <= self.clock:
                self.next_update += self.o.update_interval_s
            if self.state != "idle" or self.o.idle_updates:
                words = self._turn_words() if self.state != "idle" else []
                nxt = self.next_update
                events.append(self._turn_ev("turn_update", words))
                self.next_update = nxt
        return events

    def _on_flushed(self, flush_id: Any) -> list[Event]:
        f = self.pending
        if f is None or flush_id != f.flush_id:
            return []
        self.pending = None
        turn = [w for w in self.words if f.at is None or w.start < f.at]
        rest = self.words[len(turn):]
        events: list[Event] = []
        if f.purpose == "eager":
            self.eager_time = self.clock if f.at is None else f.at
            self.eager_words = list(turn)
            self.eager_sent = True
            self.state = "eager"
            events.append(self._turn_ev("eager_end", turn, end=f.at))
            if rest:
                events.append(self._resume())
            elif f.then_end is not None or (self._eot_on and self.p >= self.eot):
                events += self._end(turn, [], f.then_end or "model", f.at)
            return events
        if self.state == "idle":  # forced before the turn's first word was out
            if not turn:
                return []
            self.state = "ongoing"
            events.append(self._turn_ev("turn_start", turn, end=f.at))
        return events + self._end(turn, rest, f.trigger, f.at)

    def _resume(self) -> Event:
        self.state = "ongoing"
        self.eager_sent = False  # the next pause may be eager again
        self.eager_words = None
        return self._turn_ev("turn_resumed", self.words)

    def _end(self, turn: list[Word], rest: list[Word], trigger: str, at: float | None) -> list[Event]:
        events: list[Event] = []
        if self.eager is not None and turn:
            if not self.eager_sent:
                events.append(self._turn_ev("eager_end", turn, end=at))
            elif self.state == "eager" and self.eager_words is not None and [w.punctuated for w in turn] != [
                w.punctuated for w in self.eager_words
            ]:
                events.append(self._turn_ev("turn_resumed", turn, end=at))
        events.append(self._turn_ev("turn_end", turn, end=at, trigger=trigger))
        self.turn_index += 1
        self.window_start = max(self.window_start, self.clock if at is None else at)
        self.state = "idle"
        self.eager_words = None
        self.eager_sent = False
        self.heard = False
        self.words = rest
        if not rest:
            self.sentence_start = True  # a new turn starts capitalized
        if rest:
            self.state = "ongoing"
            events.append(self._turn_ev("turn_start", rest))
        return events

    def _on_close(self) -> list[Event]:
        events: list[Event] = []
        self.pending = None
        if self.state != "idle" or self.words:
            events += self._end(self.words, [], self.o.close_trigger, None)
        events.append(self._ev("closed", {"duration": round(self.clock, 3), "sha256": self.sha.hexdigest()}))
        return events

    # -- client actions --------------------------------------------------------------------------

    def on_action(self, action: str, fields: dict[str, Any]) -> list[Event]:
        if action == "audio":
            self.sha.update(fields.get("audio") or b"")
            return []
        if action != "control":
            return []
        control = fields.get("control")
        if control == "force_end":
            idle = self.state == "idle" and not self.words and not self.heard
            if idle or (self.pending is not None and self.pending.purpose == "end"):
                return []
            return [self._flush("end", "manual", None)]
        if control == "configure":
            return [self._configure(fields)]
        return []

    def _configure(self, fields: dict[str, Any]) -> Event:
        thresholds = fields.get("thresholds")
        if thresholds is None:
            thresholds = {}
        if not isinstance(thresholds, dict):
            return self._failed("thresholds must be an object")
        eot, eager, timeout = self.eot, self.eager, self.timeout_s * 1000

        def number(name: str, lo: float, hi: float) -> float | str:
            v = thresholds[name]
            if isinstance(v, bool) or not isinstance(v, int | float):
                return f"{name} must be a number"
            if not lo <= v <= hi:
                return f"{name} must be between {lo:g} and {hi:g}"
            return float(v)

        for name, rng in (("eot_threshold", self.o.eot_range), ("eager_eot_threshold", self.o.eager_range),
                          ("eot_timeout_ms", self.o.timeout_range_ms)):
            if name not in thresholds or thresholds[name] is None:
                continue
            v = number(name, *rng)
            if isinstance(v, str):
                return self._failed(v)
            if name == "eot_threshold":
                eot = v
            elif name == "eager_eot_threshold":
                eager = v
            else:
                timeout = v
        if eager is not None and eager > eot:
            return self._failed("eager_eot_threshold must not be above eot_threshold")
        for name in ("keyterms", "language_hints"):
            v = fields.get(name)
            if v is not None and (not isinstance(v, list) or not all(isinstance(x, str) for x in v)):
                return self._failed(f"{name} must be a list of strings")
        self.eot, self.eager, self.timeout_s = eot, eager, timeout / 1000
        if fields.get("keyterms") is not None:
            self.keyterms = list(fields["keyterms"])
        if fields.get("language_hints") is not None:
            self.language_hints = list(fields["language_hints"])
        return self._ev("configured", {
            "thresholds": {"eot_threshold": self.eot, "eager_eot_threshold": self.eager,
                           "eot_timeout_ms": round(self.timeout_s * 1000)},
            "keyterms": self.keyterms,
            "language_hints": self.language_hints,
        })

    def _failed(self, description: str) -> Event:
        return self._ev("configure_failed", {"code": "INVALID_CONFIGURE", "description": description})
