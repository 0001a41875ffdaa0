"""The emulator's side of Gradium's protocol: error codes and texts, setup parsing with the documented
defaults, and the `ready` answers. The messages themselves (names, shapes, wire encoding) are the
shared vocabulary, `gateway/upstream/protocol.py`.

Everything here is transport-free, so the WebSocket and REST front ends share one reading of a
setup (specs/gradium.md §3.2, §5.2) and one set of error texts (§3.5).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from gateway.audio.formats import GRADIUM_INPUT_FORMATS, GRADIUM_OUTPUT_FORMATS, AudioFormat
from gateway.emulator.library import Rule
from gateway.emulator.voices import Voice
from gateway.upstream import protocol as wire

# Close codes, as Gradium uses them in both the error frame and the close.
PROTOCOL_ERROR = 1002
UNSUPPORTED = 1003
POLICY = 1008
INTERNAL = 1011

SESSION_NOT_FOUND = "Session not found. Send setup first."
AUTH_FAILED = "API key is revoked or expired"

TTS_FRAME_S = 0.08
STT_SAMPLE_RATE = 24000
STT_FRAME_SIZE = 1920
VAD_HORIZONS = (0.5, 1.0, 2.0, 3.0)

# Documented as a string; clients in other languages may number their requests, and stamping
# back exactly what they sent keeps their routing working.
ReqId = str | int | None


class GradiumError(Exception):
    """A failure Gradium reports as `{"type":"error","message","code"}` (or HTTP 500 on REST)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def embeddings_not_found(voice_id: str) -> GradiumError:
    return GradiumError(INTERNAL, f"Embeddings not found for {voice_id}")


def new_request_id() -> str:
    return f"req_{uuid.uuid4().hex[:24]}"


def rest_error_text(code: int, message: str) -> str:
    """Body of a pre-stream REST speech failure (DOCS:errors)."""
    return f"error from server {code}: {message}"


def parse_json_config(value: Any) -> dict[str, Any]:
    """json_config arrives as an object (LK, PC, CE) or a JSON string (the Python SDK)."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise GradiumError(UNSUPPORTED, f"json_config is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise GradiumError(UNSUPPORTED, "json_config must be a JSON object")
    return value


def _number(config: dict[str, Any], key: str, lo: float, hi: float, message: str | None = None) -> None:
    if key not in config:
        return
    value = config[key]
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not lo <= value <= hi:
        raise GradiumError(UNSUPPORTED, message or f"{key} should be between {lo} and {hi}")


def _optional_str(msg: dict[str, Any], key: str) -> str | None:
    value = msg.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise GradiumError(UNSUPPORTED, f"{key} must be a string")
    return value


def client_req_id_of(msg: dict[str, Any]) -> ReqId:
    value = msg.get(wire.CLIENT_REQ_ID)
    if value is None or (isinstance(value, str | int) and not isinstance(value, bool)):
        return value
    raise GradiumError(UNSUPPORTED, "client_req_id must be a string")


def _close_on_eos(msg: dict[str, Any]) -> bool:
    value = msg.get(wire.CLOSE_WS_ON_EOS, True)
    return True if value is None else bool(value)


def _model_name(msg: dict[str, Any]) -> str:
    # Any model name is accepted and echoed: the emulator has one "model" and a gateway that maps
    # model ids should not fail here on a name real Gradium may know.
    return _optional_str(msg, "model_name") or "default"


@dataclass(frozen=True, slots=True)
class TtsSetup:
    model_name: str
    voice: Voice
    output_format: str
    audio_format: AudioFormat
    json_config: dict[str, Any]
    client_req_id: ReqId
    close_ws_on_eos: bool
    rewrites: tuple[Rule, ...] = ()  # the setup's pronunciation dictionary (`pronunciation_id`)


@dataclass(frozen=True, slots=True)
class SttSetup:
    model_name: str
    input_format: str
    audio_format: AudioFormat
    json_config: dict[str, Any]
    delay_in_frames: int
    client_req_id: ReqId
    close_ws_on_eos: bool


class VoiceLookup(Protocol):
    """What setup parsing needs from the voice store."""

    def find(self, voice_id: str) -> Voice | None: ...

    def find_by_name(self, name: str) -> Voice | None: ...

    def pronunciation_rules(self, uid: str) -> tuple[Rule, ...] | None: ...


def parse_tts_setup(msg: dict[str, Any], voices: VoiceLookup, default_voice_id: str) -> TtsSetup:
    client_req_id = client_req_id_of(msg)
    output_format = _optional_str(msg, "output_format") or "wav"
    audio_format = GRADIUM_OUTPUT_FORMATS.get(output_format)
    if audio_format is None:
        raise GradiumError(UNSUPPORTED, f"Unsupported output format: {output_format}")
    # voice_id wins over voice (LK); voice is a name, "default" when neither is given (DOCS).
    voice_id = _optional_str(msg, "voice_id")
    voice: Voice | None
    if voice_id:
        voice = voices.find(voice_id)
        if voice is None:
            raise embeddings_not_found(voice_id)
    else:
        name = _optional_str(msg, "voice") or "default"
        voice = voices.find(default_voice_id) if name == "default" else voices.find_by_name(name)
        if voice is None:
            raise embeddings_not_found(name)
    config = parse_json_config(msg.get("json_config"))
    _number(config, "temp", 0.0, 1.5)
    _number(config, "cfg_coef", 1.0, 10.0, "cfg_coef should be between 1.0 and 10.0")
    _number(config, "padding_bonus", -5.0, 5.0)
    rules: tuple[Rule, ...] = ()
    pronunciation_id = _optional_str(msg, "pronunciation_id")
    if pronunciation_id:
        found = voices.pronunciation_rules(pronunciation_id)
        if found is None:
            raise GradiumError(INTERNAL, f"Pronunciation dictionary {pronunciation_id} not found.")
        rules = found
    return TtsSetup(
        model_name=_model_name(msg),
        voice=voice,
        output_format=output_format,
        audio_format=audio_format,
        json_config=config,
        client_req_id=client_req_id,
        close_ws_on_eos=_close_on_eos(msg),
        rewrites=rules,
    )


def parse_stt_setup(msg: dict[str, Any], default_delay_in_frames: int) -> SttSetup:
    client_req_id = client_req_id_of(msg)
    input_format = _optional_str(msg, "input_format") or "wav"
    audio_format = GRADIUM_INPUT_FORMATS.get(input_format)
    if audio_format is None:
        raise GradiumError(UNSUPPORTED, f"Unsupported input format: {input_format}")
    config = parse_json_config(msg.get("json_config"))
    _number(config, "temp", 0.0, 1.5)
    _number(config, "padding_bonus", -5.0, 5.0)
    # `delay_in_tokens` is the legacy spelling (3P); either one sets the lookahead.
    key = "delay_in_frames" if "delay_in_frames" in config else "delay_in_tokens"
    _number(config, key, 0, 80)
    delay = config.get(key, default_delay_in_frames)
    keywords = config.get("keywords")
    well_formed = isinstance(keywords, dict) and isinstance(keywords.get("words", []), list)
    if keywords is not None and not well_formed:
        raise GradiumError(INTERNAL, "parsing keywords: expected an object with a `words` list")
    return SttSetup(
        model_name=_model_name(msg),
        input_format=input_format,
        audio_format=audio_format,
        json_config=config,
        delay_in_frames=round(delay),
        client_req_id=client_req_id,
        close_ws_on_eos=_close_on_eos(msg),
    )


def tts_ready(request_id: str, setup: TtsSetup, sample_rate: int, *, model_ext: str, residency: str) -> dict[str, Any]:
    """All six fields RS deserializes strictly, plus model_ext and residency (DOCS lifecycle)."""
    return {
        "type": wire.READY,
        "request_id": request_id,
        "model_name": setup.model_name,
        "model_ext": model_ext,
        "sample_rate": sample_rate,
        "frame_size": round(sample_rate * TTS_FRAME_S),
        "audio_stream_names": [],
        "text_stream_names": [],
        "residency": residency,
    }


def stt_ready(request_id: str, setup: SttSetup, *, residency: str) -> dict[str, Any]:
    # LK reads the legacy `delay_in_tokens`; sending both costs nothing (specs §5.3).
    return {
        "type": wire.READY,
        "request_id": request_id,
        "model_name": setup.model_name,
        "sample_rate": STT_SAMPLE_RATE,
        "frame_size": STT_FRAME_SIZE,
        "delay_in_frames": setup.delay_in_frames,
        "delay_in_tokens": setup.delay_in_frames,
        "text_stream_names": [],
        "residency": residency,
    }
