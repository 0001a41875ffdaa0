"""The `websocket:` section of a route: when Gradium requests start, the client-message rules, and how
the socket's requests (its *contexts*) live, buffer text and report errors."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from gateway.mapping.kinds import ErrorKind, known_kinds
from gateway.mapping.kinds import StrictModel as _Model

Action = Literal[
    "text", "audio", "flush", "end_of_stream", "keepalive", "ignore", "close", "clear", "error",
    "control",  # hand the rule's fields to the context's transform (Flux Configure/ForceEndTurn); no Gradium message
    "reply",  # answer with the route's `event` template (e.g. a Warning); the session goes on
]


class InboundRule(_Model):
    """One WebSocket client-message rule; the first rule whose `when` matches decides the action."""

    when: dict[str, Any] | Literal["binary", "any"] | list[str] = Field(
        description=(
            '"binary", "any", field -> literal | {present: bool} | {type: ...}, or a list of strings: a text '
            "frame that is not JSON and equals one of them (bare commands such as Cartesia's `finalize`)"
        )
    )
    do: Action
    fields: dict[str, Any] = Field(
        default_factory=dict, description="template for the action's arguments, with $message.<field>"
    )
    error: ErrorKind | None = None
    message: str | None = None
    event: str | None = Field(default=None, description="do: reply: the `render` event to answer with")

    @model_validator(mode="after")
    def _error_needs_kind(self) -> InboundRule:
        if self.do == "error" and self.error is None:
            raise ValueError("do: error needs `error: <kind>`")
        if self.do == "reply" and self.event is None:
            raise ValueError("do: reply needs `event: <render event name>`")
        return self


class Idle(_Model):
    seconds: Any = Field(description="number or $param")
    error: ErrorKind = "idle_timeout"
    message: str | None = None


class ContextsSpec(_Model):
    """How the Gradium requests of one socket (its *contexts*) live, end and fail."""

    max: int | None = Field(default=None, ge=1, description="concurrent contexts per socket (null: no limit)")
    multiplex: bool = Field(
        default=False, description="carry this socket's requests over one Gradium socket (client_req_id)"
    )
    on_end: Literal["close", "keep"] = Field(
        default="close",
        description="close: the socket closes when its request ends; keep: the next input starts a new request",
    )
    on_error: Literal["close", "report"] = Field(
        default="close",
        description=(
            "close: any error ends the socket; report: an error tied to a context (its message named one, or its "
            "Gradium request failed) is sent with that `$context_id` and ends only that context"
        ),
    )
    reuse_cleared: bool = Field(
        default=True, description="false: a context id cleared (cancelled) on this socket cannot be used again"
    )


class TextSpec(_Model):
    """TTS sockets: when the client's text goes to Gradium."""

    schedule: Any = Field(
        default=None,
        description=(
            "template, rendered per context -> list of character counts: TTS text is held until the complete "
            "words buffered reach the next count (the last one repeats); a flush or the end of input sends the "
            "rest, and a `text` action with `trigger: true` sends once the smallest count is reached. "
            "Null (the default): whole words are forwarded as soon as they are complete"
        ),
    )
    flush_after_ms: float | None = Field(
        default=None,
        description=(
            "text that waited this long without more text is flushed to Gradium (inline flush); a `text` "
            "action's `flush_after_ms` field overrides it per message (0: flush every message). Null: no timer"
        ),
    )


class WsErrorsSpec(_Model):
    """This route's error messages, when they differ from the mapping's `errors.ws_message`."""

    message: Any = Field(default=None, description="error message template (default: `errors.ws_message`)")
    codes: dict[str, str] = Field(
        default_factory=dict, description="error kind -> the `$error.code` this route shows (e.g. `auth_error`)"
    )

    @field_validator("codes")
    @classmethod
    def _known_kinds(cls, v: dict[str, str]) -> dict[str, str]:
        known_kinds(v)
        return v


# Keys of the `websocket` section before it was grouped, and where each one went: `check` says so
# (with the key's line) instead of only "extra inputs are not permitted".
MOVED_KEYS: dict[tuple[str, str], str] = {("websocket", k): v for k, v in {
    "max_contexts": "contexts.max",
    "multiplex": "contexts.multiplex",
    "on_end": "contexts.on_end",
    "context_errors": "contexts.on_error",
    "reject_cleared": "contexts.reuse_cleared (inverted: `reuse_cleared: false`)",
    "text_schedule": "text.schedule",
    "flush_after_ms": "text.flush_after_ms",
    "error_message": "errors.message",
    "error_codes": "errors.codes",
    "text_frames_only": "an inbound rule `{when: binary, do: error, error: invalid_message}`",
    "close_on_end": "contexts.on_end",
}.items()}


class WsSpec(_Model):
    open: Literal["connect", "first_message", "on_demand"] = Field(
        default="connect",
        description=(
            "when the first Gradium request starts: on connect, after the first client message (its fields "
            "are params), or on demand when an action names a context (multi-context sockets)"
        ),
    )
    subprotocols: list[str] = Field(default_factory=list)
    idle: Idle | None = None
    greeting: Any = Field(default=None, description="message sent once after the upgrade (template)")
    inbound: list[InboundRule]
    contexts: ContextsSpec = Field(default_factory=ContextsSpec)
    text: TextSpec = Field(default_factory=TextSpec)
    errors: WsErrorsSpec = Field(default_factory=WsErrorsSpec)
