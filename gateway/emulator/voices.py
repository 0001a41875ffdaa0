"""The voice catalogue the emulator serves; the gateway may import it for offline voice tables.

Flagship ids come from specs/gradium.md §7 (SDK-repo api_doc.md table), plus Everly, LiveKit's
default, and `_6Aslh2DxfmnRLmP`, Pipecat's default.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

from gateway.emulator.tones import TONE_S

CUSTOM_TONE_STEP_S = 0.006


@dataclass(frozen=True, slots=True)
class Voice:
    uid: str
    name: str
    language: str
    description: str = ""
    is_catalog: bool = True
    is_pro_clone: bool = False
    tags: tuple[tuple[str | None, str], ...] = field(default_factory=tuple)
    start_s: float | None = None
    filename: str | None = None
    owner: str | None = None  # the org (key id) that created it; None: the emulator's pre-made voices

    @property
    def tone_s(self) -> float:
        """How long this voice holds each tone: its audible identity. Catalogue voices share the
        codec's standard length; every custom voice gets one of four longer lengths from its uid, so a
        test reading the audio can tell which voice spoke (the ASR decodes all of them alike)."""
        if self.is_catalog:
            return TONE_S
        return TONE_S + CUSTOM_TONE_STEP_S * (1 + zlib.crc32(self.uid.encode()) % 4)

    def to_api(self) -> dict[str, Any]:
        """The `APIVoiceResponse` shape (OAS)."""
        return {
            "uid": self.uid,
            "name": self.name,
            "description": self.description,
            "filename": self.filename,
            "start_s": self.start_s,
            "is_catalog": self.is_catalog,
            "is_pro_clone": self.is_pro_clone,
            "language": self.language,
            "tags": [{"category": c, "value": v} for c, v in self.tags],
        }


def _flagship(uid: str, name: str, language: str, description: str, gender: str) -> Voice:
    return Voice(
        uid=uid,
        name=name,
        language=language,
        description=description,
        tags=(("language", language), ("gender", gender), ("tier", "flagship")),
    )


CATALOG: tuple[Voice, ...] = (
    _flagship("YTpq7expH9539ERJ", "Emma", "en-us", "Warm, clear American English voice.", "female"),
    _flagship("LFZvm12tW_z0xfGo", "Kent", "en-us", "Relaxed American English voice.", "male"),
    _flagship("m86j6D7UZpGzHsNu", "Jack", "en-gb", "Friendly British English voice.", "male"),
    _flagship("b35yykvVppLXyw_l", "Elise", "fr", "Calm French voice.", "female"),
    _flagship("-uP9MuGtBqAvEyxI", "Mia", "de", "Bright German voice.", "female"),
    _flagship("B36pbz5_UoWn4BDl", "Valentina", "es-mx", "Expressive Mexican Spanish voice.", "female"),
    _flagship("pYcGZz9VOo4n2ynh", "Alice", "pt-br", "Lively Brazilian Portuguese voice.", "female"),
    _flagship("vjFyp2BcCyTlUmYb", "Everly", "en-us", "Soft American English voice.", "female"),
    _flagship("_6Aslh2DxfmnRLmP", "Russell", "en-us", "American English voice (Pipecat default).", "male"),
)

# One org clone, so `GET /voices/` without the catalogue has something to list.
CUSTOM_VOICES: tuple[Voice, ...] = (
    Voice(
        uid="emuClone00000001",
        name="Emulator Clone",
        language="en",
        description="A custom voice owned by the emulator's org.",
        is_catalog=False,
        start_s=0.0,
        filename="clone.wav",
    ),
)

# When setup names neither voice_id nor voice (DOCS: voice "default").
DEFAULT_VOICE_ID = "YTpq7expH9539ERJ"

CATALOG_BY_ID: dict[str, Voice] = {v.uid: v for v in CATALOG}
