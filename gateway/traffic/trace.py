"""Traces of the two legs of a compared unit: what a producer records and what the comparator reads.

A *unit* is one REST request or one WebSocket socket (traffic.md §4). When a unit is shadowed, each
leg (the primary the client sees, and the shadow or noise copy) gets a `LegTrace`; both go into one
`PairTrace`, which is handed to `gateway.traffic.compare.compare_pair` once both legs ended, and the
result is written by `gateway.traffic.store`. Both legs are observed *in the client's dialect*
(traffic.md principle 4), so the same producer code reads both.

Contract for a producer (the shadow fork and its observers):

- Create the pair at unit start: `PairTrace.open(tenant=, provider=, route=, kind=, transport=,
  primary_side=, shadow_side=)`; it makes both legs with `side` and `role` filled and a UUIDv7
  `pair_id`. A noise pair is the same with `shadow_side == primary_side` (its `pair_kind` is "noise").
- Every timestamp is `time.monotonic_ns() / 1e6` (ms, float: `now_ms()`); omit `t` to stamp "now".
  Latencies are measured from each leg's *own* send times, so a shadow leg stamps when *it* sends a
  frame upstream, not when the client sent it (queue lag then cancels out).
- Client -> upstream, on each leg, right after the frame was handed to that leg's upstream:
  `sent_audio(nbytes, dur_s)` (STT audio; `dur_s` from the input format, 0 if unknown),
  `sent_text(nchars, ctx)` (TTS text; `ctx` the dialect's context id, None for single-context routes),
  `sent_control(kind, ctx)` with kind one of `finalize|flush|close_context|clear|end_of_input|keepalive`.
  For REST, `sent_request(nbytes)` when the request is sent.
- Upstream -> client, on each leg, as each frame (WS) or body chunk/event (REST) arrives, decoded from
  the dialect (the mapping's `observe` block): `audio(data, ctx)` with the *client-format* audio bytes
  (base64 already decoded), `interim(text)`, `final(text, words)` (words as `Word(text, start_s,
  end_s)` in audio time, when the dialect gives them; a Cartesia-style delta is recorded as is:
  finals are concatenated verbatim: set `final_joiner = ""`), `turn(kind, audio_end_s)` for
  end-of-turn signals (`"end"`; `audio_end_s` when the dialect says where in the audio the turn
  ended), `other(size)` for anything else (metadata, keep-alive acknowledgements).
- On the end: `error(message, code)` if the leg failed, and always `close(code=..., status=...)`
  (WebSocket close code or HTTP status). The leg's `outcome` is set by the shadow machinery on the
  pair (`PairTrace.outcome`, traffic.md §8 values).
- Optional: `upstream_request_id`, `leg_id` (defaults to a fresh id), `audio_format` (what the
  client asked for, a `gateway.audio.formats.AudioFormat`; needed to decode headerless PCM), and on
  the pair `input_text` (TTS; only kept in the store with `store_text`), `language`, `flags`,
  `config_version`, `sticky_reason`, `lag_p95_ms`, `shadow_connect_ms`, `cost_tts_chars`,
  `cost_stt_seconds`, `privacy` (privacy-flagged request: no text is ever stored), `primary_target`
  (a noise copy of the candidate's side compares two candidate legs, grouped under the unit's primary).

Hand the pair to the recorder (`PairRecorder.record(pair)`) once both legs are closed (or the shadow
was given up: set `outcome` first) and do not touch it afterwards: it is read by another thread.

Everything is bounded (`TraceLimits`): past a limit the trace stops recording that kind of data and
sets a flag (`events_truncated`, `audio_truncated`, `text_truncated`, `sends_thinned`) that the
comparator turns into row flags, so a 15-minute socket never grows memory without bound. Recording is
cheap (appends, no decoding): the comparator does the work later, off the event loop.
"""

from __future__ import annotations

import bisect
import secrets
import time
from dataclasses import dataclass, field
from typing import Literal

from gateway.audio.formats import AudioFormat

Side = Literal["gradium", "legacy"]
Role = Literal["primary", "shadow"]
Kind = Literal["tts", "stt"]
Transport = Literal["rest", "ws"]
PairKind = Literal["candidate", "noise"]
OutputKind = Literal["audio", "interim", "final", "turn", "other"]


def now_ms() -> float:
    return time.monotonic_ns() / 1e6


_last_v7_ms = 0


def uuid7() -> str:
    """A UUIDv7 (RFC 9562; traffic.md §4.6): time-ordered, so pair and leg ids sort by creation time in the
    store; strictly increasing in a process (a millisecond already used is bumped, as the `uuid6` package
    does). Written out here: `str(uuid.UUID(int=..., version=7))` costs 5.6 us, on a shadowed unit's path."""
    global _last_v7_ms
    ms = max(time.time_ns() // 1_000_000, _last_v7_ms + 1)
    _last_v7_ms = ms
    rand = secrets.randbits(74)  # 12 bits after the version, 62 after the variant
    h = f"{ms & 0xFFFF_FFFF_FFFF:012x}7{rand >> 62:03x}{(0b10 << 62) | (rand & ((1 << 62) - 1)):016x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True, slots=True)
class TraceLimits:
    max_events: int = 4096  # output events kept per leg (audio chunks, transcripts, turns)
    max_audio_bytes: int = 16 * 1024 * 1024  # client-format audio kept per leg, all contexts together
    max_text_chars: int = 200_000  # transcript characters kept per leg
    max_send_points: int = 8192  # audio-sent checkpoints per leg (thinned by half when full)
    max_contexts: int = 256  # TTS contexts tracked per leg


DEFAULT_LIMITS = TraceLimits()


@dataclass(frozen=True, slots=True)
class Word:
    text: str
    start: float  # audio seconds from the start of the unit's audio
    end: float


@dataclass(slots=True)
class Output:
    """One upstream frame or body event as the client would have received it."""

    t_ms: float
    kind: OutputKind
    size: int  # bytes of the frame/event as received
    audio_bytes: int = 0
    ctx: str | None = None
    text: str = ""
    words: tuple[Word, ...] = ()
    turn: str | None = None
    audio_end_s: float | None = None


@dataclass(slots=True)
class Control:
    t_ms: float
    kind: str
    ctx: str | None = None


@dataclass(slots=True)
class LegTrace:
    side: Side
    role: Role
    provider: str
    route: str
    kind: Kind
    transport: Transport
    limits: TraceLimits = DEFAULT_LIMITS
    leg_id: str = field(default_factory=uuid7)
    upstream_request_id: str | None = None
    audio_format: AudioFormat | None = None
    final_joiner: str = " "  # how the dialect's finals concatenate ("" for delta transcripts)
    start_ms: float = field(default_factory=now_ms)
    end_ms: float | None = None
    close_code: int | None = None
    status: int | None = None
    close_reason: str | None = None
    error_message: str | None = None
    error_code: str | None = None
    # client -> upstream
    request_sent_ms: float | None = None
    request_bytes: int = 0
    first_audio_sent_ms: float | None = None
    audio_sent_s: float = 0.0
    audio_sent_bytes: int = 0
    text_sent_chars: int = 0
    send_points: list[tuple[float, float]] = field(default_factory=list)  # (audio offset end s, t_ms)
    first_text_ms: dict[str | None, float] = field(default_factory=dict)  # per context
    controls: list[Control] = field(default_factory=list)
    # upstream -> client
    outputs: list[Output] = field(default_factory=list)
    audio_buf: dict[str | None, bytearray] = field(default_factory=dict)  # client-format bytes per context
    output_count: int = 0
    output_bytes: int = 0
    audio_bytes_total: int = 0
    first_output_ms: float | None = None
    # bounds hit
    events_truncated: bool = False
    audio_truncated: bool = False
    text_truncated: bool = False
    sends_thinned: bool = False
    _audio_kept: int = 0
    _text_kept: int = 0
    _send_gap_s: float = 0.0
    _last_send: tuple[float, float] | None = None

    # -- client -> upstream ---------------------------------------------------------------------
    def sent_request(self, nbytes: int = 0, t: float | None = None) -> None:
        self.request_sent_ms = now_ms() if t is None else t
        self.request_bytes = nbytes

    def sent_audio(self, nbytes: int, dur_s: float, t: float | None = None) -> None:
        t = now_ms() if t is None else t
        if self.first_audio_sent_ms is None:
            self.first_audio_sent_ms = t
        self.audio_sent_bytes += nbytes
        self.audio_sent_s += max(dur_s, 0.0)
        self._last_send = (self.audio_sent_s, t)
        pts = self.send_points
        if pts and self.audio_sent_s - pts[-1][0] < self._send_gap_s:
            return
        if len(pts) >= self.limits.max_send_points:
            # keep the whole unit covered at half the resolution instead of forgetting its end
            self.send_points = pts = pts[1::2]
            self._send_gap_s = 2 * (pts[-1][0] - pts[0][0]) / max(len(pts), 1)
            self.sends_thinned = True
        pts.append((self.audio_sent_s, t))

    def sent_text(self, nchars: int, ctx: str | None = None, t: float | None = None) -> None:
        t = now_ms() if t is None else t
        self.text_sent_chars += nchars
        if ctx not in self.first_text_ms and len(self.first_text_ms) < self.limits.max_contexts:
            self.first_text_ms[ctx] = t

    def sent_control(self, kind: str, ctx: str | None = None, t: float | None = None) -> None:
        if len(self.controls) < self.limits.max_events:
            self.controls.append(Control(now_ms() if t is None else t, kind, ctx))
        else:
            self.events_truncated = True

    # -- upstream -> client ---------------------------------------------------------------------
    def _add(self, out: Output, *, is_output: bool = True) -> None:
        self.output_count += 1
        self.output_bytes += out.size
        if is_output and self.first_output_ms is None:
            self.first_output_ms = out.t_ms
        if len(self.outputs) < self.limits.max_events:
            self.outputs.append(out)
        else:
            self.events_truncated = True

    def audio(self, data: bytes, ctx: str | None = None, size: int | None = None, t: float | None = None) -> None:
        t = now_ms() if t is None else t
        n = len(data)
        self.audio_bytes_total += n
        room = self.limits.max_audio_bytes - self._audio_kept
        if room > 0 and (ctx in self.audio_buf or len(self.audio_buf) < self.limits.max_contexts):
            kept = data[:room]
            self.audio_buf.setdefault(ctx, bytearray()).extend(kept)
            self._audio_kept += len(kept)
            if len(kept) < n:
                self.audio_truncated = True
        elif n:
            self.audio_truncated = True
        self._add(Output(t, "audio", n if size is None else size, audio_bytes=n, ctx=ctx), is_output=n > 0)

    def _text(self, text: str) -> str:
        room = self.limits.max_text_chars - self._text_kept
        if len(text) > room:
            self.text_truncated = True
            text = text[: max(room, 0)]
        self._text_kept += len(text)
        return text

    def interim(self, text: str, size: int | None = None, t: float | None = None) -> None:
        t = now_ms() if t is None else t
        kept = self._text(text)
        self._add(Output(t, "interim", len(text) if size is None else size, text=kept), is_output=bool(text.strip()))

    def final(
        self, text: str, words: tuple[Word, ...] | list[Word] = (), size: int | None = None, t: float | None = None
    ) -> None:
        t = now_ms() if t is None else t
        kept = self._text(text)
        out = Output(t, "final", len(text) if size is None else size, text=kept, words=tuple(words))
        self._add(out, is_output=bool(text.strip()))

    def turn(self, kind: str = "end", audio_end_s: float | None = None, size: int = 0, t: float | None = None) -> None:
        t = now_ms() if t is None else t
        self._add(Output(t, "turn", size, turn=kind, audio_end_s=audio_end_s), is_output=False)

    def other(self, size: int, t: float | None = None) -> None:
        self._add(Output(now_ms() if t is None else t, "other", size), is_output=False)

    def error(self, message: str, code: str | None = None, t: float | None = None) -> None:
        self.error_message = message[:500]
        self.error_code = code
        if self.end_ms is None:
            self.end_ms = now_ms() if t is None else t

    def close(
        self, code: int | None = None, status: int | None = None, reason: str | None = None, t: float | None = None
    ) -> None:
        self.end_ms = now_ms() if t is None else t
        self.close_code = code
        self.status = status
        self.close_reason = reason[:200] if reason else reason

    # -- reading ----------------------------------------------------------------------------------
    @property
    def sent_start_ms(self) -> float:
        """The leg's own send time that latencies are measured from."""
        for t in (self.request_sent_ms, self.first_audio_sent_ms, min(self.first_text_ms.values(), default=None)):
            if t is not None:
                return t
        return self.start_ms

    @property
    def truncated(self) -> bool:
        return self.events_truncated or self.audio_truncated or self.text_truncated

    def audio_bytes(self, ctx: str | None = None) -> bytes:
        return bytes(self.audio_buf.get(ctx, b""))

    def all_audio(self) -> bytes:
        """Audio of every context in first-seen order (single-context legs: the only one)."""
        return b"".join(bytes(b) for b in self.audio_buf.values())

    def finals(self) -> list[Output]:
        return [o for o in self.outputs if o.kind == "final"]

    def t_sent_at_offset(self, offset_s: float) -> float | None:
        """When the audio reaching `offset_s` was sent (first checkpoint at or past it)."""
        pts = self.send_points
        i = bisect.bisect_left(pts, (offset_s, float("-inf")))
        if i < len(pts):
            return pts[i][1]
        last = self._last_send
        return last[1] if last is not None and last[0] >= offset_s else None

    def offset_sent_by(self, t_ms: float) -> float:
        """How much audio (s) had been sent at `t_ms` (the inverse of `t_sent_at_offset`)."""
        last = self._last_send
        if last is not None and last[1] <= t_ms:
            return last[0]
        i = bisect.bisect_right([p[1] for p in self.send_points], t_ms)
        return self.send_points[i - 1][0] if i else 0.0

    def final_text(self) -> str:
        return self.final_joiner.join(o.text for o in self.outputs if o.kind == "final")


@dataclass(slots=True)
class PairTrace:
    tenant: str
    provider: str
    route: str
    kind: Kind
    transport: Transport
    primary: LegTrace
    shadow: LegTrace
    pair_id: str = field(default_factory=uuid7)
    started_at: float = field(default_factory=time.time)  # wall clock (epoch s) for the store
    ended_at: float | None = None
    outcome: str = "completed"
    flags: set[str] = field(default_factory=set)
    config_version: str | None = None
    sticky_reason: str | None = None
    input_text: str | None = None
    language: str | None = "en"
    lag_p95_ms: float | None = None
    shadow_connect_ms: float | None = None
    cost_tts_chars: int = 0
    cost_stt_seconds: float = 0.0
    privacy: bool = False
    primary_request_id: str | None = None  # the client-facing request id of the primary
    primary_target: Side | None = None  # the unit's primary side when it is not `primary.side` (candidate noise)

    @classmethod
    def open(
        cls,
        *,
        tenant: str,
        provider: str,
        route: str,
        kind: Kind,
        transport: Transport,
        primary_side: Side,
        shadow_side: Side,
        audio_format: AudioFormat | None = None,
        limits: TraceLimits = DEFAULT_LIMITS,
        **extra: object,
    ) -> PairTrace:
        def leg(side: Side, role: Role) -> LegTrace:
            return LegTrace(side, role, provider, route, kind, transport, limits=limits, audio_format=audio_format)

        return cls(tenant, provider, route, kind, transport, leg(primary_side, "primary"),
                   leg(shadow_side, "shadow"), **extra)  # type: ignore[arg-type]

    @property
    def pair_kind(self) -> PairKind:
        return "noise" if self.primary.side == self.shadow.side else "candidate"

    @property
    def reference(self) -> LegTrace:
        """The baseline: the legacy leg of a candidate pair, the primary of a noise pair (traffic.md §5.2)."""
        if self.pair_kind == "noise":
            return self.primary
        return self.primary if self.primary.side == "legacy" else self.shadow

    @property
    def hypothesis(self) -> LegTrace:
        return self.shadow if self.reference is self.primary else self.primary

    def all_flags(self) -> set[str]:
        flags = set(self.flags)
        for leg in (self.primary, self.shadow):
            for name in ("events_truncated", "audio_truncated", "text_truncated", "sends_thinned"):
                if getattr(leg, name):
                    flags.add(name)
        return flags
