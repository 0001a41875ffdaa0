"""Per-app emulator state: voices (catalogue plus org clones), usage, auth. Faults and stats have
their own AppKeys so tests can reach them directly."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gateway.emulator.auth import Auth
from gateway.emulator.settings import EmulatorSettings
from gateway.emulator.voices import CATALOG, CATALOG_BY_ID, Voice

# Draft voices from the voice designer (SDK voices.py): any such id is treated as ready.
EMBEDDING_ID_PREFIX = "vox_emb_"

# Credit prices (specs §7): TTS per character, STT per second.
TTS_CREDITS_PER_CHAR = 1
STT_CREDITS_PER_S = 3


class VoiceStore:
    def __init__(self, custom: Iterable[Voice]) -> None:
        self._custom: dict[str, Voice] = {v.uid: v for v in custom}

    def find(self, voice_id: str) -> Voice | None:
        voice = CATALOG_BY_ID.get(voice_id) or self._custom.get(voice_id)
        if voice is None and voice_id.startswith(EMBEDDING_ID_PREFIX) and len(voice_id) > len(EMBEDDING_ID_PREFIX):
            voice = Voice(uid=voice_id, name=voice_id, language="en", is_catalog=False)
        return voice

    def find_by_name(self, name: str) -> Voice | None:
        folded = name.casefold()
        for voice in (*CATALOG, *self._custom.values()):
            if voice.name.casefold() == folded:
                return voice
        return None

    def list(self, include_catalog: bool) -> list[Voice]:
        custom = list(self._custom.values())
        return [*CATALOG, *custom] if include_catalog else custom

    def create(self, **attrs: Any) -> Voice:
        uid = secrets.token_urlsafe(12)[:16]
        voice = Voice(uid=uid, is_catalog=False, **attrs)
        self._custom[uid] = voice
        return voice

    def update(self, uid: str, changes: dict[str, Any]) -> Voice | None:
        voice = self._custom.get(uid)
        if voice is None:
            return None
        allowed = {k: v for k, v in changes.items() if k in ("name", "description", "language", "start_s")}
        if "tags" in changes and isinstance(changes["tags"], list):
            allowed["tags"] = tuple(
                (t.get("category"), str(t.get("value", ""))) for t in changes["tags"] if isinstance(t, dict)
            )
        voice = dataclasses.replace(voice, **allowed)
        self._custom[uid] = voice
        return voice

    def delete(self, uid: str) -> bool:
        return self._custom.pop(uid, None) is not None


@dataclass
class Usage:
    tts_characters: int = 0
    stt_seconds: float = 0.0
    sessions: int = 0
    ingress_messages: int = 0
    egress_messages: int = 0

    @property
    def consumed_credits(self) -> int:
        return self.tts_characters * TTS_CREDITS_PER_CHAR + round(self.stt_seconds * STT_CREDITS_PER_S)


@dataclass
class EmulatorState:
    settings: EmulatorSettings
    auth: Auth
    voices: VoiceStore
    usage: Usage = field(default_factory=Usage)

    @classmethod
    def create(cls, settings: EmulatorSettings) -> EmulatorState:
        return cls(settings=settings, auth=Auth(settings), voices=VoiceStore(settings.custom_voices))


STATE = web.AppKey("emulator_state", EmulatorState)
