"""Named value functions usable in templates (`$speed | speed_to_padding_bonus`).

A closed registry: pure functions of one value, None in -> None out, so an absent optional field
stays absent. Anything that needs state across messages is an event transform instead.
"""

from __future__ import annotations

import base64
import math
import uuid
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


@value_function
def keyword_tokens(v: Any) -> list[str] | None:
    """Key terms (`["Gradium AI", "nova:2"]`, a `:boost` suffix dropped) -> Gradium STT `keywords.words`:
    single tokens, unique, at most 500; None when there are none, so the whole `keywords` drops out."""
    out: list[str] = []
    for term in v if isinstance(v, list) else [v]:
        text = str(term)
        head, sep, tail = text.rpartition(":")
        if sep and head and tail.lstrip("-").replace(".", "", 1).isdigit():
            text = head
        for tok in text.split():
            if tok not in out:
                out.append(tok)
    return out[:500] or None


@value_function
def stable_uuid(v: Any) -> str:
    """A UUID that always comes out the same for the same name (model uuids, project ids)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"gradium-gateway:{v}"))


@value_function
def spaced_words(v: Any) -> list[dict[str, Any]]:
    """Timed words (transform word dicts) -> the same words with a `spacing` entry between each two
    (ElevenLabs Scribe lists): `{text, start, end, type: word|spacing, logprob}`, the word's text as
    punctuated, `logprob` the natural log of its confidence (0 for spacing)."""
    out: list[dict[str, Any]] = []
    for w in v if isinstance(v, list) else []:
        if not isinstance(w, dict):
            continue
        start, end = float(w.get("start") or 0.0), float(w.get("end") or w.get("start") or 0.0)
        if out:
            gap_start = out[-1]["end"]
            out.append({"text": " ", "start": gap_start, "end": max(gap_start, start), "type": "spacing",
                        "logprob": 0.0})
        conf = float(w.get("confidence") or 1.0)
        out.append({"text": str(w.get("punctuated") or w.get("text") or ""), "start": start, "end": end,
                    "type": "word", "logprob": round(math.log(max(conf, 1e-6)), 4)})
    return out


@value_function
def char_times(v: Any) -> list[dict[str, Any]] | None:
    """A timed word `{text, start, end}` -> its characters with the word's span shared evenly."""
    if not isinstance(v, dict) or not v.get("text"):
        return None
    text, start = str(v["text"]), float(v.get("start") or 0.0)
    step = (max(float(v.get("end") or start), start) - start) / len(text)
    return [{"text": ch, "start": round(start + i * step, 3), "end": round(start + (i + 1) * step, 3)}
            for i, ch in enumerate(text)]


@value_function
def joined_texts(v: Any) -> str:
    """A list of `{text}` objects (or strings) -> their texts joined by spaces and ending with one, so
    the last word counts as complete (dialogue `inputs`)."""
    parts = [str(x.get("text") or "") if isinstance(x, dict) else str(x) for x in (v if isinstance(v, list) else [v])]
    return " ".join(p.strip() for p in parts if p.strip()) + " "


@value_function
def complement(v: Any) -> float:
    """1 - x, for probabilities and thresholds given the other way round (speech vs silence)."""
    return round(1.0 - float(v), 4)


_LANGUAGE_NAMES = {
    "en": "English", "ja": "Japanese", "zh": "Chinese", "de": "German", "hi": "Hindi", "fr": "French",
    "ko": "Korean", "pt": "Portuguese", "it": "Italian", "es": "Spanish", "id": "Indonesian", "nl": "Dutch",
    "tr": "Turkish", "fil": "Filipino", "pl": "Polish", "sv": "Swedish", "bg": "Bulgarian", "ro": "Romanian",
    "ar": "Arabic", "cs": "Czech", "el": "Greek", "fi": "Finnish", "hr": "Croatian", "ms": "Malay",
    "sk": "Slovak", "da": "Danish", "ta": "Tamil", "uk": "Ukrainian", "ru": "Russian", "hu": "Hungarian",
    "no": "Norwegian", "vi": "Vietnamese",
}


@value_function
def language_name(v: Any) -> str:
    """ISO 639-1 code -> English name (`fr` -> `French`); the code itself when unknown."""
    code = str(v).replace("_", "-").split("-")[0].lower()
    return _LANGUAGE_NAMES.get(code, str(v))
