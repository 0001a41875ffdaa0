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
from gateway.emulator.library import EMBEDDING_ID_PREFIX, DraftStore, PronunciationStore, Rule
from gateway.emulator.settings import EmulatorSettings
from gateway.emulator.voices import CATALOG, CATALOG_BY_ID, Voice

# Credit prices (specs §7): TTS per character, STT per second.
TTS_CREDITS_PER_CHAR = 1
STT_CREDITS_PER_S = 3


class VoiceStore:
    """Catalogue voices plus custom ones. A custom voice belongs to the org (key id) that made it:
    listing, reading, editing and deleting see only the caller's own (pre-made ones, `owner` None,
    belong to every org). TTS (`find`) resolves any id: the emulator does not track a socket's org."""

    def __init__(self, custom: Iterable[Voice]) -> None:
        self._custom: dict[str, Voice] = {v.uid: v for v in custom}
        self.pronunciations = PronunciationStore()
        self.drafts = DraftStore()

    def pronunciation_rules(self, uid: str) -> tuple[Rule, ...] | None:
        return self.pronunciations.rules(uid)

    def owned(self, owner: str) -> list[Voice]:
        return [v for v in self._custom.values() if v.owner in (None, owner)]

    def find_owned(self, owner: str, uid: str) -> Voice | None:
        v = self._custom.get(uid)
        return v if v is not None and v.owner in (None, owner) else None

    def find(self, voice_id: str) -> Voice | None:
        voice = CATALOG_BY_ID.get(voice_id) or self._custom.get(voice_id)
        if (voice is None and voice_id.startswith(EMBEDDING_ID_PREFIX) and len(voice_id) > len(EMBEDDING_ID_PREFIX)
                and not self.drafts.unready(voice_id)):
            voice = Voice(uid=voice_id, name=voice_id, language="en", is_catalog=False)
        return voice

    def find_by_name(self, name: str) -> Voice | None:
        folded = name.casefold()
        for voice in (*CATALOG, *self._custom.values()):
            if voice.name.casefold() == folded:
                return voice
        return None

    def list(self, owner: str, include_catalog: bool) -> list[Voice]:
        custom = self.owned(owner)
        return [*CATALOG, *custom] if include_catalog else custom

    def create(self, owner: str, **attrs: Any) -> tuple[Voice, bool]:
        """A new voice, or (Gradium's `was_updated`) the org's voice of that name, replaced."""
        same = next((v for v in self.owned(owner) if v.owner == owner and v.name == attrs.get("name")), None)
        uid = same.uid if same is not None else secrets.token_urlsafe(12)[:16]
        voice = Voice(uid=uid, is_catalog=False, owner=owner, **attrs)
        self._custom[uid] = voice
        return voice, same is not None

    def update(self, owner: str, uid: str, changes: dict[str, Any]) -> Voice | None:
        voice = self.find_owned(owner, uid)
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

    def delete(self, owner: str, uid: str) -> bool:
        return self.find_owned(owner, uid) is not None and self._custom.pop(uid, None) is not None


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
