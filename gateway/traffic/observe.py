"""Reading dialect frames into a `LegTrace` (traffic.md §5.1): one observer per leg, both legs alike.

Both legs of a pair speak the *client's* dialect, so one set of rules per route reads both. A producer
calls `observer.client(data, t)` for every frame it sent upstream on that leg (client -> upstream) and
`observer.upstream(data, t)` for every frame the leg produced (upstream -> client); REST legs use
`observe_rest_body`. The rules are data (`RULES`, keyed by provider and route): JSON paths into the
frames, in the shape a mapping's `observe:` block would take (they move there once the mapping schema
has that key).

Rule fields: `match` (top-level key -> value, list of values, or `PRESENT`), `event` (`audio`, `interim`,
`final`, `transcript` = final when the `final` path is true, `turn`, `text`, `control`, `audio_in`,
`ignore`), `text`, `final`, `words` (list of {word|text|punctuated_word, start, end}), `audio`
(base64), `ctx` (context id paths, first present wins), `audio_end` (seconds; several paths are
added), `turn_if` (a transcript that also ends a turn when this path is true), `control` (kind name).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.audio.formats import AudioFormat
from gateway.traffic.trace import LegTrace, Word

PRESENT = object()


@dataclass(frozen=True, slots=True)
class Rule:
    event: str
    match: dict[str, Any] = field(default_factory=dict)
    text: str | None = None
    final: str | None = None
    words: str | None = None
    audio: str | None = None
    ctx: tuple[str, ...] = ()
    audio_end: tuple[str, ...] = ()
    turn_if: str | None = None
    control: str | None = None


@dataclass(frozen=True, slots=True)
class RouteRules:
    upstream: tuple[Rule, ...] = ()  # server -> client frames (text); binary frames are audio
    client: tuple[Rule, ...] = ()  # client -> server text frames; binary frames are input audio
    client_words: dict[str, str] = field(default_factory=dict)  # bare-word text frames -> control kind
    final_joiner: str = " "


_DG_LISTEN = RouteRules(
    upstream=(
        Rule("transcript", {"type": "Results"}, text="channel.alternatives.0.transcript", final="is_final",
             words="channel.alternatives.0.words", audio_end=("start", "duration"), turn_if="speech_final"),
    ),
    client=(Rule("control", {"type": "Finalize"}, control="finalize"),
            Rule("control", {"type": "CloseStream"}, control="end_of_input"),
            Rule("control", {"type": "KeepAlive"}, control="keepalive")),
)
_DG_FLUX = RouteRules(
    upstream=(
        Rule("final", {"type": "TurnInfo", "event": "EndOfTurn"}, text="transcript", words="words",
             audio_end=("audio_window_end",), turn_if="event"),
        Rule("interim", {"type": "TurnInfo", "event": ["Update", "StartOfTurn", "EagerEndOfTurn", "TurnResumed"]},
             text="transcript"),
    ),
    client=(Rule("control", {"type": "CloseStream"}, control="end_of_input"),),
)
_DG_SPEAK = RouteRules(client=(
    Rule("text", {"type": "Speak"}, text="text"),
    Rule("control", {"type": "Flush"}, control="flush"),
    Rule("control", {"type": "Clear"}, control="clear"),
    Rule("control", {"type": "Close"}, control="end_of_input"),
))
_EL_CTX = ("contextId", "context_id")
_EL_TTS = RouteRules(
    upstream=(Rule("audio", {"audio": PRESENT}, audio="audio", ctx=_EL_CTX),),
    client=(Rule("control", {"close_context": True}, control="close_context", ctx=_EL_CTX),
            Rule("control", {"close_socket": True}, control="end_of_input"),
            Rule("text", {"text": PRESENT}, text="text", ctx=_EL_CTX),
            Rule("control", {"flush": True}, control="flush", ctx=_EL_CTX)),
)
_EL_STT = RouteRules(
    upstream=(Rule("interim", {"message_type": "partial_transcript"}, text="text"),
              Rule("final", {"message_type": "committed_transcript"}, text="text")),
    client=(Rule("audio_in", {"message_type": "input_audio_chunk"}, audio="audio_base_64", control="commit"),
            Rule("control", {"message_type": "commit"}, control="finalize")),
)
_CA_TTS = RouteRules(
    upstream=(Rule("audio", {"type": "chunk"}, audio="data", ctx=("context_id",)),),
    client=(Rule("control", {"cancel": True}, control="cancel", ctx=("context_id",)),
            Rule("text", {"transcript": PRESENT}, text="transcript", ctx=("context_id",))),
)
_CA_STT = RouteRules(
    upstream=(Rule("transcript", {"type": "transcript"}, text="text", final="is_final", words="words"),),
    client=(Rule("control", {"type": "finalize"}, control="finalize"),
            Rule("control", {"type": ["close", "done"]}, control="end_of_input")),
    client_words={"finalize": "finalize", "close": "end_of_input", "done": "end_of_input"},
    final_joiner="",  # Cartesia's text is the delta since the last final
)
_CA_TURNS = RouteRules(
    upstream=(Rule("final", {"type": "turn.end"}, text="transcript", turn_if="type"),
              Rule("interim", {"type": ["turn.update", "turn.eager_end"]}, text="transcript")),
    client=(Rule("control", {"type": "close"}, control="end_of_input"),),
    client_words={"close": "end_of_input", "done": "end_of_input"},
)

RULES: dict[tuple[str, str], RouteRules] = {
    ("deepgram", "listen_live"): _DG_LISTEN,
    ("deepgram", "listen_flux"): _DG_FLUX,
    ("deepgram", "speak_live"): _DG_SPEAK,
    ("elevenlabs", "tts_stream_input"): _EL_TTS,
    ("elevenlabs", "tts_multi_stream_input"): _EL_TTS,
    ("elevenlabs", "dialogue_multi_stream_input"): _EL_TTS,
    ("elevenlabs", "stt_realtime"): _EL_STT,
    ("cartesia", "tts_websocket"): _CA_TTS,
    ("cartesia", "stt_websocket"): _CA_STT,
    ("cartesia", "stt_turns"): _CA_TURNS,
}


def get_path(obj: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(obj, dict):
            obj = obj.get(part)
        elif isinstance(obj, list) and part.isdigit() and int(part) < len(obj):
            obj = obj[int(part)]
        else:
            return None
    return obj


def _matches(msg: dict[str, Any], match: dict[str, Any]) -> bool:
    for key, want in match.items():
        got = msg.get(key)
        if want is PRESENT:
            if key not in msg:
                return False
        elif isinstance(want, list):
            if got not in want:
                return False
        elif got != want:
            return False
    return True


def _words(raw: Any) -> list[Word]:
    out = []
    for w in raw if isinstance(raw, list) else ():
        if not isinstance(w, dict):
            continue
        start, end = w.get("start"), w.get("end")
        text = w.get("word") or w.get("punctuated_word") or w.get("text") or ""
        if isinstance(start, int | float) and isinstance(end, int | float):
            out.append(Word(str(text), float(start), float(end)))
    return out


def _b64(value: Any) -> bytes:
    if not isinstance(value, str) or not value:
        return b""
    try:
        return base64.b64decode(value, validate=False)
    except (binascii.Error, ValueError):
        return b""


def _ctx(msg: dict[str, Any], paths: tuple[str, ...]) -> str | None:
    for p in paths:
        v = get_path(msg, p)
        if v is not None:
            return str(v)
    return None


class Observer:
    """Feeds one leg's frames into its trace. `input_format` turns input audio bytes into seconds."""

    def __init__(self, leg: LegTrace, provider: str, route: str, input_format: AudioFormat | None = None) -> None:
        self.leg = leg
        self.rules = RULES.get((provider, route), RouteRules())
        self.input_format = input_format
        leg.final_joiner = self.rules.final_joiner

    def seconds(self, nbytes: int) -> float:
        f = self.input_format
        if f is None or not f.is_raw_pcm:
            return 0.0  # compressed input: duration unknown without decoding (emission latency unavailable)
        return nbytes / (f.sample_rate * f.channels * f.bytes_per_sample)

    @staticmethod
    def _parse(data: str | bytes) -> dict[str, Any] | None:
        try:
            msg = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        return msg if isinstance(msg, dict) else None

    def client(self, data: str | bytes, t: float | None = None) -> None:
        leg = self.leg
        if isinstance(data, bytes):
            leg.sent_audio(len(data), self.seconds(len(data)), t=t)
            return
        word = self.rules.client_words.get(data.strip())
        if word is not None:
            leg.sent_control(word, t=t)
            return
        msg = self._parse(data)
        if msg is None:
            return
        for rule in self.rules.client:
            if not _matches(msg, rule.match):
                continue
            ctx = _ctx(msg, rule.ctx)
            if rule.event == "text":
                text = get_path(msg, rule.text or "")
                if isinstance(text, str) and text.strip():
                    leg.sent_text(len(text), ctx, t=t)
                continue  # ElevenLabs: a text message may also flush
            if rule.event == "audio_in":
                audio = _b64(get_path(msg, rule.audio or ""))
                leg.sent_audio(len(audio), self.seconds(len(audio)), t=t)
                if rule.control and msg.get(rule.control) is True:
                    leg.sent_control("finalize", t=t)
                return
            leg.sent_control(rule.control or "control", ctx, t=t)
            return

    def upstream(self, data: str | bytes, t: float | None = None) -> None:
        leg = self.leg
        if isinstance(data, bytes):
            leg.audio(data, t=t)
            return
        msg = self._parse(data)
        rule = next((r for r in self.rules.upstream if msg is not None and _matches(msg, r.match)), None)
        if msg is None or rule is None:
            leg.other(len(data), t=t)
            return
        size = len(data)
        if rule.event == "audio":
            leg.audio(_b64(get_path(msg, rule.audio or "")), _ctx(msg, rule.ctx), size=size, t=t)
            return
        text = get_path(msg, rule.text or "")
        text = text if isinstance(text, str) else ""
        final = rule.event == "final" or (rule.event == "transcript" and get_path(msg, rule.final or "") is True)
        if final:
            leg.final(text, _words(get_path(msg, rule.words or "")), size=size, t=t)
        else:
            leg.interim(text, size=size, t=t)
        if rule.turn_if and get_path(msg, rule.turn_if) not in (None, False):
            ends = [get_path(msg, p) for p in rule.audio_end]
            end = sum(ends) if ends and all(isinstance(e, int | float) for e in ends) else None
            leg.turn("end", audio_end_s=end, t=t)


def observe_rest_body(leg: LegTrace, chunk: bytes, content_type: str, t: float | None = None) -> None:
    """A REST answer chunk: audio bodies are audio; a JSON transcript (Deepgram, ElevenLabs, Cartesia
    batch STT) is one final with its words."""
    ct = content_type.split(";")[0].strip().lower()
    if not ct.endswith("json"):
        leg.audio(chunk, t=t)
        return
    try:
        msg = orjson.loads(chunk)
    except orjson.JSONDecodeError:
        leg.other(len(chunk), t=t)
        return
    alt = get_path(msg, "results.channels.0.alternatives.0")
    if isinstance(alt, dict):  # Deepgram prerecorded
        leg.final(str(alt.get("transcript") or ""), _words(alt.get("words")), size=len(chunk), t=t)
    elif isinstance(msg, dict) and isinstance(msg.get("text"), str):  # ElevenLabs / Cartesia batch
        leg.final(msg["text"], _words(msg.get("words")), size=len(chunk), t=t)
    else:
        leg.other(len(chunk), t=t)
