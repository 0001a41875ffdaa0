"""An org's pronunciation dictionaries and voice-generator drafts (specs/gradium.md §7).

Both are kept per org (the key id that created them), like Gradium's. A dictionary's rules rewrite the
text a TTS request speaks when its WebSocket setup names the dictionary (`pronunciation_id`).
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

# Draft voices from the voice designer (SDK voices.py): usable in TTS as soon as they exist.
EMBEDDING_ID_PREFIX = "vox_emb_"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Rule:
    original: str
    rewrite: str
    case_sensitive: bool = False

    def to_api(self) -> dict[str, Any]:
        return {"original": self.original, "rewrite": self.rewrite, "case_sensitive": self.case_sensitive}


def parse_rules(value: Any) -> list[Rule] | None:
    """`[{"original", "rewrite", "case_sensitive"?}]` -> rules; None when the shape is wrong."""
    if not isinstance(value, list):
        return None
    out = []
    for r in value:
        if not isinstance(r, dict) or not isinstance(r.get("original"), str) or not r["original"].strip():
            return None
        if not isinstance(r.get("rewrite"), str):
            return None
        out.append(Rule(r["original"], r["rewrite"], bool(r.get("case_sensitive", False))))
    return out


def rewrite(text: str, rules: tuple[Rule, ...]) -> str:
    """`text` with every rule's original (a whole word or phrase) replaced by its rewrite."""
    for rule in rules:
        flags = 0 if rule.case_sensitive else re.IGNORECASE
        text = re.sub(rf"(?<!\w){re.escape(rule.original)}(?!\w)", lambda _m, r=rule.rewrite: r, text, flags=flags)
    return text


@dataclass(slots=True)
class Dictionary:
    uid: str
    owner: str
    name: str
    language: str
    description: str
    rules: tuple[Rule, ...]
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)

    def to_api(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "name": self.name,
            "language": self.language,
            "description": self.description,
            "rules": [r.to_api() for r in self.rules],
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


class PronunciationStore:
    def __init__(self) -> None:
        self._dicts: dict[str, Dictionary] = {}

    def create(self, owner: str, name: str, language: str, description: str, rules: list[Rule]) -> Dictionary:
        d = Dictionary(secrets.token_urlsafe(12)[:16], owner, name, language, description, tuple(rules))
        self._dicts[d.uid] = d
        return d

    def get(self, owner: str, uid: str) -> Dictionary | None:
        d = self._dicts.get(uid)
        return d if d is not None and d.owner == owner else None

    def rules(self, uid: str) -> tuple[Rule, ...] | None:
        """For a TTS setup: the dictionary's rules whoever asks (the socket's org is not tracked)."""
        d = self._dicts.get(uid)
        return None if d is None else d.rules

    def list(self, owner: str, language: str | None) -> list[Dictionary]:
        return [d for d in self._dicts.values() if d.owner == owner and (not language or d.language == language)]

    def update(self, owner: str, uid: str, changes: dict[str, Any]) -> Dictionary | None:
        d = self.get(owner, uid)
        if d is None:
            return None
        for key in ("name", "language", "description"):
            if isinstance(changes.get(key), str):
                setattr(d, key, changes[key])
        if "rules" in changes:
            d.rules = tuple(parse_rules(changes["rules"]) or ())
        d.updated_at = _now()
        return d

    def delete(self, owner: str, uid: str) -> bool:
        return self.get(owner, uid) is not None and self._dicts.pop(uid, None) is not None


@dataclass(frozen=True, slots=True)
class Draft:
    embedding_id: str
    owner: str
    prompt: str
    language: str
    created_at: str
    expires_at: str
    ready_at: float = 0.0  # monotonic time it becomes usable

    @property
    def ready(self) -> bool:
        return time.monotonic() >= self.ready_at

    def to_api(self) -> dict[str, Any]:
        return {"embedding_id": self.embedding_id, "ready": self.ready, "expires_at": self.expires_at,
                "prompt": self.prompt, "language": self.language, "created_at": self.created_at}


class DraftStore:
    """Voice-generator drafts (`vox_emb_...`), usable in TTS at once and kept as a voice by
    `POST /api/voices/from-embedding`."""

    def __init__(self) -> None:
        self._drafts: dict[str, Draft] = {}

    def generate(self, owner: str, prompt: str, language: str, n: int, ready_after_s: float = 0.0) -> list[Draft]:
        now = datetime.now(UTC)
        out = []
        for _ in range(n):
            d = Draft(EMBEDDING_ID_PREFIX + secrets.token_urlsafe(12), owner, prompt, language,
                      now.isoformat(timespec="seconds").replace("+00:00", "Z"),
                      (now + timedelta(hours=24)).isoformat(timespec="seconds").replace("+00:00", "Z"),
                      time.monotonic() + ready_after_s)
            self._drafts[d.embedding_id] = d
            out.append(d)
        return out

    def get(self, owner: str, embedding_id: str) -> Draft | None:
        d = self._drafts.get(embedding_id)
        return d if d is not None and d.owner == owner else None

    def unready(self, embedding_id: str) -> bool:
        d = self._drafts.get(embedding_id)
        return d is not None and not d.ready
