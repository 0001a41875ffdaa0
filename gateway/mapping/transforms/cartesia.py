"""`cartesia_tts`: Gradium TTS -> Cartesia's `chunk` / `timestamps` / `flush_done` / `done` events.

Cartesia contexts are streamed text with manual flushes: after a `flush`, the client gets the audio of
everything sent so far, then a `flush_done` with an increasing `flush_id`, and the context goes on.
Gradium's only TTS flush is the inline `<flush>` tag, with no acknowledgement, so a flush here ends
the Gradium request (its `end_of_stream` *is* the acknowledgement) and the context's next text opens
a new request whose output the runtime holds until this one is done (`contexts.on_end: keep`). One transform
runs per Gradium request; what must survive from one request of a context to the next (how many
flushes so far, how much audio) lives in `SessionInfo.shared`, which the WebSocket runtime keeps per
context id.

Events (their Cartesia shapes are the mapping's templates):
- `chunk`: `audio_b64` (base64 audio in the client's format), `flush_id` (1 + flushes before this
  audio), `step_time` (ms since the previous chunk);
- `timestamps` (option `timestamps`): the words heard since the last chunk, `words`, `start_s` and
  `stop_s` as lists, in seconds from the start of the *context* (they run on across flushes), and the
  `flush_id` of their chunk;
- `flush_done` (`flush_id`): this request ended on a client flush;
- `done`: this request ended the context (`continue: false`).

A request ends on a flush when the client's `text` action carried `end` together with `continue`
(the mapping's inbound rule sets both); any other end is the context's last.

Value functions for the Cartesia mapping are registered here too (`cartesia_speed_to_padding_bonus`,
`one_minus`).
"""

from __future__ import annotations

import time
from typing import Any

from gateway.mapping.functions import value_function
from gateway.mapping.transforms.base import Event, Options, SessionInfo, register
from gateway.mapping.transforms.tts_audio import TtsAudio, TtsAudioOptions
from gateway.upstream import protocol as gradium

# Cartesia's named speeds (top-level `speed`, `__experimental_controls.speed`) as rate multipliers.
_NAMED_SPEEDS = {"slowest": 0.6, "slow": 0.8, "normal": 1.0, "fast": 1.2, "fastest": 1.4}


@value_function
def cartesia_speed_to_padding_bonus(v: Any) -> float | None:
    """Cartesia's experimental speed -> Gradium `padding_bonus` (-4..4, negative is faster).

    Names (`slowest` .. `fastest`) are rate multipliers 0.6 .. 1.4; numbers are the 2024-11-13 scale
    -1 (slowest) .. 1 (fastest), read as multiplier 1 + 0.4 * x. Then as `speed_to_padding_bonus`:
    0.1 of speed is one unit of padding. Anything else is ignored (None)."""
    if isinstance(v, str):
        rate = _NAMED_SPEEDS.get(v.strip().lower())
    elif isinstance(v, int | float) and not isinstance(v, bool):
        rate = 1.0 + 0.4 * max(-1.0, min(1.0, float(v)))
    else:
        rate = None
    if rate is None:
        return None
    return round(max(-4.0, min(4.0, (1.0 - rate) * 10.0)), 2)


@value_function
def one_minus(v: Any) -> float:
    """1 - x (a probability of the opposite: Cartesia's turn-end thresholds are P(still speaking))."""
    return round(1.0 - float(v), 6)


class CartesiaTtsOptions(Options):
    timestamps: bool = False  # `add_timestamps`: word timestamps events


@register
class CartesiaTts(TtsAudio):
    name = "cartesia_tts"
    Options = CartesiaTtsOptions  # type: ignore[assignment]
    EVENTS = {
        "chunk": frozenset({"audio_b64", "start_s", "stop_s", "flush_id", "step_time"}),
        "timestamps": frozenset({"words", "start_s", "stop_s", "flush_id"}),
        "flush_done": frozenset({"flush_id"}),
        "done": frozenset(),
    }

    def __init__(self, info: SessionInfo, options: CartesiaTtsOptions) -> None:  # type: ignore[override]
        super().__init__(info, TtsAudioOptions(encoding="base64"))
        self.timestamps = options.timestamps
        self.shared = info.shared
        self.flush_id = int(self.shared.get("flushes", 0)) + 1  # the flush this request's audio belongs to
        self.final = True  # until the client's input ends this request with a flush
        self.offset: float | None = None  # context time at the start of this request
        self.words: list[str] = []
        self.starts: list[float] = []
        self.stops: list[float] = []
        self.last_out = info.started

    def on_action(self, action: str, fields: dict[str, Any]) -> list[Event]:
        if action == "text" and fields.get("end") and fields.get("continue"):
            self.final = False
            self.shared["flushes"] = self.flush_id
        return []

    def _words_event(self) -> list[Event]:
        if not self.words:
            return []
        event = ("timestamps", {"words": self.words, "start_s": self.starts, "stop_s": self.stops,
                                "flush_id": self.flush_id})
        self.words, self.starts, self.stops = [], [], []
        return [event]

    def on_gradium(self, msg: dict[str, Any]) -> list[Event]:
        if self.offset is None:
            # The previous request of this context has finished by now (the runtime keeps the order).
            self.offset = float(self.shared.get("clock", 0.0))
        kind = msg.get("type")
        if kind == gradium.TEXT:
            text = str(msg.get("text") or "").strip()
            if self.timestamps and text:
                start = float(msg.get("start_s") or 0.0)
                stop = float(msg.get("stop_s") or start)
                self.words.append(text)
                self.starts.append(round(self.offset + start, 3))
                self.stops.append(round(self.offset + max(start, stop), 3))
            return []
        out: list[Event] = []
        for name, fields in TtsAudio.on_gradium(self, msg):  # not `super()`: no proxy object per chunk
            if name == "audio":
                if fields.get("audio_b64"):
                    now = time.monotonic()
                    fields["flush_id"] = self.flush_id
                    # microseconds rounded as an int, then in ms: the same 3-decimal value as `round(ms, 3)`
                    # without its correctly rounded decimal conversion (dtoa), once per chunk
                    fields["step_time"] = round((now - self.last_out) * 1e6) / 1000
                    self.last_out = now
                    out.append(("chunk", fields))
                if self.words:  # most chunks carry no new word: no call, no empty list
                    out.extend(self._words_event())
            elif name == "end":
                out.extend(self._words_event())
                self.shared["clock"] = self.offset + self.audio_clock
                if self.final:
                    self.shared.clear()
                    out.append(("done", {}))
                else:
                    out.append(("flush_done", {"flush_id": self.flush_id}))
            else:
                out.append((name, fields))
        return out
