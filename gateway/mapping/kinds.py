"""What every part of the mapping language shares: the error kinds and the strict model base."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict

ErrorKind = Literal[
    "unauthorized",
    "forbidden",
    "not_found",
    "method_not_allowed",
    "invalid_json",
    "invalid_request",
    "invalid_message",
    "voice_not_found",
    "model_not_found",
    "unsupported_format",
    "invalid_audio",
    "payload_too_large",
    "rate_limited",
    "idle_timeout",
    "too_many_contexts",
    "conflict",  # e.g. a voice or dictionary name already taken
    "quota_exceeded",  # the Gradium account's voice slots or credits are used up
    "upstream_error",
    "upstream_unavailable",
    "internal",
]
ERROR_KINDS: tuple[str, ...] = ErrorKind.__args__  # type: ignore[attr-defined]

def known_kinds(names: Iterable[str]) -> None:
    """Raise (for a validator) when some of `names` are not error kinds."""
    unknown = set(names) - set(ERROR_KINDS)
    if unknown:
        raise ValueError(f"unknown error kinds {sorted(unknown)}; known: {', '.join(ERROR_KINDS)}")


class StrictModel(BaseModel):
    """A YAML section: unknown keys are errors (a misspelt key never passes silently)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
