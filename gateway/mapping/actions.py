"""The arguments each WebSocket action takes: the `fields:` of an inbound rule, one model per action.

The compiler validates every rule's `fields` keys against its action's model at load time, so a
misspelt field (`flush_afer_ms:`) is an error with file and line, not a silent no-op. Values are
templates (usually `$message.<field>`), rendered per message, so they are not typed here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class NoArgs(_Args):
    """keepalive, ignore, close: nothing to say."""


class ContextArgs(_Args):
    context: Any = Field(default=None, description="the context id the message belongs to (multi-context sockets)")


class TextArgs(ContextArgs):
    text: Any = Field(default=None, description="text to speak (re-cut on word boundaries)")
    flush: Any = Field(default=None, description="true: speak what is buffered now")
    end: Any = Field(default=None, description="true: this ends the request's input (after the text)")
    trigger: Any = Field(default=None, description="release scheduled text early (ElevenLabs try_trigger_generation)")
    flush_after_ms: Any = Field(default=None, description="delay before a timed flush; overrides `text.flush_after_ms`")
    parts: Any = Field(default=None, description="a list of {text, segment}: text in segments (dialogue lines)")
    segment: Any = Field(default=None, description="the segment the text belongs to (a new one starts a request)")
    continue_: Any = Field(default=None, alias="continue", description="read by the `cartesia_tts` transform")


class AudioArgs(ContextArgs):
    audio: Any = Field(default=None, description="base64 audio (binary frames carry it themselves)")
    flush: Any = Field(default=None, description="true: a Gradium flush after this audio (a commit)")


class ControlArgs(ContextArgs):
    control: Any = Field(description="what the transform is asked: configure | force_end")
    thresholds: Any = None
    keyterms: Any = None
    language_hints: Any = None


class ReplyArgs(_Args):
    """do: reply: the fields are the event's own, for its template."""

    model_config = ConfigDict(extra="allow")


ACTION_ARGS: dict[str, type[BaseModel]] = {
    "text": TextArgs,
    "audio": AudioArgs,
    "flush": ContextArgs,
    "end_of_stream": ContextArgs,
    "clear": ContextArgs,
    "error": ContextArgs,
    "control": ControlArgs,
    "reply": ReplyArgs,
    "keepalive": ContextArgs,
    "ignore": NoArgs,
    "close": NoArgs,
}


def check_args(action: str, fields: dict[str, Any]) -> list[tuple[str, str]]:
    """Problems with a rule's `fields` for `action`: (field, message) pairs; empty when they fit."""
    model = ACTION_ARGS[action]
    if model.model_config.get("extra") == "allow":
        return []
    allowed = {f.alias or name for name, f in model.model_fields.items()}
    problems = [(k, f"unknown field {k!r} for do: {action} (allowed: {', '.join(sorted(allowed)) or 'none'})")
                for k in fields if k not in allowed]
    for name, f in model.model_fields.items():
        if f.is_required() and (f.alias or name) not in fields:
            problems.append((f.alias or name, f"do: {action} needs `{f.alias or name}`"))
    return problems
