"""Gradium's streaming vocabulary, both ways: every message the gateway sends Gradium or reads from it is
built or read here, and the emulator (`gateway/emulator/`, the other side of the same wire) speaks it too.

A client sends `setup`, then `text` (TTS) or `audio` (STT), `flush` (STT), `end_of_stream`; Gradium answers
`ready`, `audio` and `text` (TTS), `text`, `end_text`, `step` and `flushed` (STT), `end_of_stream`, or an
`error`; with `client_req_id` on each when several requests share a socket (specs/gradium.md §3, §5).

Messages stay plain dicts, what orjson reads and writes: this is the per-frame path, so there is no model
and no validation per message. Builders give the exact wire shape; readers take what Gradium sends and
never fail on a missing, null or odd field (a frame that is not a JSON object is `Malformed`). This
module imports nothing of the gateway, so the runtime, the transforms and the emulator can all import it.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Final, Literal

import orjson

try:  # SIMD base64: an 80 ms chunk of client audio goes in ~0.3 us instead of ~5 us (binascii)
    from pybase64 import b64encode as _b64
except ImportError:  # pragma: no cover - the stdlib's, same bytes
    def _b64(data: bytes) -> bytes:
        return binascii.b2a_base64(data, newline=False)

Message = dict[str, Any]  # one parsed message; its `type` is one of `Kind`
Kind = Literal["setup", "ready", "text", "audio", "flush", "flushed", "end_of_stream", "end_text", "step",
               "error", "need_more_text"]

# message types: every message has one, under `type`
SETUP: Final[Kind] = "setup"
READY: Final[Kind] = "ready"
TEXT: Final[Kind] = "text"
AUDIO: Final[Kind] = "audio"
FLUSH: Final[Kind] = "flush"
FLUSHED: Final[Kind] = "flushed"
END_OF_STREAM: Final[Kind] = "end_of_stream"
END_TEXT: Final[Kind] = "end_text"
STEP: Final[Kind] = "step"
ERROR: Final[Kind] = "error"
NEED_MORE_TEXT: Final[Kind] = "need_more_text"  # RS 0.1.12+, meaning undocumented: readers ignore it

CLIENT_REQ_ID: Final = "client_req_id"  # on every message of one request on a shared socket
CLOSE_WS_ON_EOS: Final = "close_ws_on_eos"  # setup: false keeps the socket open after the request
INLINE_FLUSH: Final = "<flush>"  # TTS: a tag in the text, not a message

# Not Gradium's: the gateway's marker where the next request of a sequence (`upstream/sequence.py`) starts.
SEGMENT: Final = "segment"


class Malformed(ValueError):
    """A frame that is not a Gradium message: JSON, but not an object."""


class NotJson(Malformed):
    """A frame that is not JSON at all."""


# -- the client's messages (the gateway builds them, the emulator reads them) ----------------------------


def setup(fields: Message, *, close_ws_on_eos: bool = True) -> Message:
    msg = {"type": SETUP, **fields}
    if not close_ws_on_eos:
        msg[CLOSE_WS_ON_EOS] = False  # the socket outlives the request (pooled, or shared)
    return msg


def rest_tts(fields: Message, value: str) -> Message:
    """The body of a REST TTS request: the setup's fields and the whole text, answered as NDJSON (§2)."""
    return {**fields, "text": value, "only_audio": False}


def text(value: str) -> Message:
    return {"type": TEXT, "text": value}


def text_flush(rest: str | None) -> Message:
    """TTS: the rest of the buffered text, rendered now (Gradium's inline flush)."""
    return text(f"{rest} {INLINE_FLUSH}" if rest else INLINE_FLUSH)


def audio(pcm: bytes) -> Message:
    return {"type": AUDIO, "audio": _b64(pcm).decode()}


AUDIO_HEAD = b'{"type":"audio","audio":"'  # an `audio` message is AUDIO_HEAD + base64 + AUDIO_TAIL
AUDIO_TAIL = b'"}'
b64encode = _b64  # bytes -> base64 bytes


def audio_payload(pcm: bytes, client_req_id: str | None = None) -> bytes:
    """`dumps(audio(pcm))`, with `client_req_id` last as a shared socket's stream adds it: the frame of
    every client audio chunk, built from the base64 bytes (no dict, no str of the base64, no JSON scan)."""
    tail = AUDIO_TAIL if client_req_id is None else b'","client_req_id":' + orjson.dumps(client_req_id) + b"}"
    return b"".join((AUDIO_HEAD, _b64(pcm), tail))


def flush(flush_id: int | str) -> Message:
    return {"type": FLUSH, "flush_id": flush_id}


def end_of_stream(client_req_id: str | None = None) -> Message:
    """The end of a request's input (client), or of its output (Gradium)."""
    return {"type": END_OF_STREAM} if client_req_id is None else {"type": END_OF_STREAM, CLIENT_REQ_ID: client_req_id}


# -- Gradium's messages (the emulator builds them, the gateway reads them) -------------------------------


def timed_audio(data: bytes | str, start_s: float, stop_s: float) -> Message:
    """TTS audio with its times; `data` may stay raw bytes until `dumps` writes them as base64."""
    return {"type": AUDIO, "audio": data, "start_s": round(start_s, 4), "stop_s": round(stop_s, 4), "stream_id": 0}


def timed_text(word: str, start_s: float, stop_s: float | None = None) -> Message:
    """A word with its start (and, from TTS, its stop; STT sends the stop as `end_text`)."""
    msg: Message = {"type": TEXT, "text": word, "start_s": round(start_s, 4)}
    if stop_s is not None:
        msg["stop_s"] = round(stop_s, 4)
    msg["stream_id"] = 0
    return msg


def end_text(stop_s: float) -> Message:
    return {"type": END_TEXT, "stop_s": round(stop_s, 4), "stream_id": 0}


def step(vad: list[Message], step_idx: int, step_duration_s: float, total_duration_s: float) -> Message:
    """STT semantic VAD, one per 80 ms frame: `vad` is [{horizon_s, inactivity_prob}] per horizon."""
    return {"type": STEP, "vad": vad, "step_idx": step_idx, "step_duration_s": step_duration_s,
            "total_duration_s": round(total_duration_s, 4)}


_ABSENT: Any = object()


def flushed(flush_id: Any = _ABSENT) -> Message:
    """The answer to a `flush`, echoing its id exactly as sent (clients send ints or strings)."""
    return {"type": FLUSHED} if flush_id is _ABSENT else {"type": FLUSHED, "flush_id": flush_id}


def error(code: int, message: str, client_req_id: str | int | None = None) -> Message:
    msg: Message = {"type": ERROR, "message": message, "code": code}
    if client_req_id is not None:
        msg[CLIENT_REQ_ID] = client_req_id
    return msg


# -- reading ---------------------------------------------------------------------------------------------


def parse(raw: str | bytes) -> Message:
    """One WebSocket text frame or NDJSON line -> its message."""
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise NotJson("not JSON") from None
    if type(msg) is not dict:
        raise Malformed("not a JSON object")
    return msg


def error_of(msg: Message) -> tuple[int | None, str]:
    """An `error` message's close code (None when absent or not a number) and text."""
    code = msg.get("code")
    return (code if type(code) is int else None), str(msg.get("message") or "")


def audio_bytes(msg: Message) -> bytes:
    return base64.b64decode(msg.get("audio") or "")


class Inactivity:
    """Reads a `step`'s inactivity probability at the horizon nearest `horizon_s` (None: the step has none).

    Once per 80 ms frame: Gradium sends the same horizons in every step, so the nearest one's index is
    remembered and only looked for again when the list changes."""

    __slots__ = ("_at", "_i", "horizon_s")

    def __init__(self, horizon_s: float) -> None:
        self.horizon_s = horizon_s
        self._i = 0
        self._at: Any = _ABSENT  # the horizon found at `_i`

    def read(self, msg: Message) -> float | None:
        """The probability (a step every 80 ms: a caller keeps the bound `read`, which is a cheaper call than
        the instance's `__call__`)."""
        vad = msg.get("vad")
        if vad.__class__ is list:
            try:  # the usual case, in as few steps as it takes: the horizon found last time is there
                entry = vad[self._i]
                if entry["horizon_s"] == self._at:
                    return float(entry["inactivity_prob"])
            except (LookupError, TypeError, ValueError):
                pass  # whatever is odd, judged below as ever
        return self._find(vad)

    __call__ = read

    def _find(self, vad: Any) -> float | None:
        if not isinstance(vad, list) or not vad:
            return None
        try:
            i = self._i
            if i >= len(vad) or vad[i].get("horizon_s") != self._at:
                target = self.horizon_s
                i = min(range(len(vad)), key=lambda k: abs(float(vad[k].get("horizon_s", 0)) - target))
                self._i, self._at = i, vad[i].get("horizon_s")
            return float(vad[i].get("inactivity_prob", 0.0))
        except (AttributeError, TypeError, ValueError):
            return None  # never a crash on Gradium's input


# -- the wire --------------------------------------------------------------------------------------------


def _wire_default(obj: Any) -> str:
    # The emulator keeps audio as bytes so REST can stream it raw; on a JSON wire audio is base64.
    if isinstance(obj, bytes | bytearray | memoryview):
        return base64.b64encode(obj).decode()
    raise TypeError(f"cannot serialize {type(obj).__name__}")


def dumps(msg: Message) -> bytes:
    """A message as the UTF-8 payload of one text frame."""
    return orjson.dumps(msg, default=_wire_default)


def dumps_line(msg: Message) -> bytes:
    """A message as one NDJSON line."""
    return orjson.dumps(msg, default=_wire_default, option=orjson.OPT_APPEND_NEWLINE)
