"""Named value functions usable in templates (`$speed | speed_to_padding_bonus`).

A closed registry: pure functions of one value, None in -> None out, so an absent optional field
stays absent. Anything that needs state across messages is an event transform instead.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import orjson

VALUE_FUNCTIONS: dict[str, Callable[[Any], Any]] = {}


def value_function(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def safe(v: Any) -> Any:
        return None if v is None else fn(v)

    VALUE_FUNCTIONS[fn.__name__] = safe
    return safe


def _clamp(x: float, lo: float, hi: float) -> float:
    return max(lo, min(hi, x))


@value_function
def speed_to_padding_bonus(speed: float) -> float:
    """Speaking-rate multiplier (1.0 normal, ElevenLabs 0.7-1.2, Deepgram 0.7-1.5) -> Gradium
    `padding_bonus` (-4..4, negative is faster). 0.1 of speed is one unit of padding."""
    return round(_clamp((1.0 - float(speed)) * 10.0, -4.0, 4.0), 2)


@value_function
def stability_to_temp(stability: float) -> float:
    """ElevenLabs `stability` (0..1, higher is steadier, 0.5 typical) -> Gradium `temp` (0..1.4,
    0.7 default, lower is steadier): 0.5 -> 0.7, 1.0 -> 0.2, 0.0 -> 1.2."""
    return round(_clamp(1.2 - float(stability), 0.0, 1.4), 3)


@value_function
def similarity_to_cfg_coef(similarity: float) -> float:
    """ElevenLabs `similarity_boost` (0..1, 0.75 typical) -> Gradium `cfg_coef` (1..4, 2.0 default)."""
    return round(_clamp(1.0 + float(similarity) * 4.0 / 3.0, 1.0, 4.0), 3)


@value_function
def lower(v: Any) -> str:
    return str(v).lower()


@value_function
def to_str(v: Any) -> str:
    return v if isinstance(v, str) else orjson.dumps(v).decode() if isinstance(v, dict | list) else str(v)


@value_function
def to_int(v: Any) -> int:
    return int(v)


@value_function
def json_string(v: Any) -> str:
    return orjson.dumps(v).decode()


@value_function
def b64(v: bytes) -> str:
    return base64.b64encode(v).decode()


@value_function
def seconds_to_ms(v: float) -> int:
    return round(float(v) * 1000)


@value_function
def language_base(v: str) -> str:
    """BCP-47 tag -> its primary language (`en-US` -> `en`), the form Gradium's `language` takes."""
    return str(v).replace("_", "-").split("-")[0].lower()


_ISO3 = {"en": "eng", "fr": "fra", "de": "deu", "es": "spa", "pt": "por", "it": "ita", "nl": "nld", "ja": "jpn"}


@value_function
def language_iso3(v: str) -> str:
    """Two-letter language -> ISO 639-3, as ElevenLabs reports `language_code`."""
    base = str(v).split("-")[0].lower()
    return _ISO3.get(base, base)


@value_function
def gradium_language(v: str) -> str | None:
    """Languages Gradium STT knows (en, fr, de, es, pt); anything else is left to auto-detection."""
    base = str(v).replace("_", "-").split("-")[0].lower()
    return base if base in {"en", "fr", "de", "es", "pt"} else None


@value_function
def enabled(v: Any) -> bool:
    """Deepgram-style switches that are either a value or `false` (`endpointing=300` / `endpointing=false`)."""
    return str(v).strip().lower() not in ("false", "0", "off", "no", "")
