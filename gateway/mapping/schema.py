"""The mapping language: what a `mappings/<provider>.yaml` file may say, validated at load time.

A mapping describes `provider <-> Gradium` and nothing else:
- `credentials`: where a caller's key or token may be found;
- `tables`: value tables (voice ids, models, output formats), inline or from a file;
- `errors`: the provider's error kinds (status, code, WS close) and body/message templates;
- `routes`: for each endpoint, the request fields (`params`), the Gradium `setup` built from them,
  the audio formats, the WebSocket message rules (`inbound`), the named output transform and the
  templates that render its events (`render`), and response headers.

Templates are plain YAML values in which a string `$name` (or `$name.path`, optionally piped through
named value functions: `$speed | speed_to_padding_bonus`) is replaced by a value; keys whose value
comes out null are dropped.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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

SOURCES = ("path", "query", "header", "body", "form", "message", "const")
_SOURCE_RE = re.compile(rf"^({'|'.join(SOURCES)})(\.[^.\s]+)*$")

Action = Literal[
    "text", "audio", "flush", "end_of_stream", "keepalive", "ignore", "close", "clear", "error",
    "control",  # hand the rule's fields to the context's transform (Flux Configure/ForceEndTurn); no Gradium message
    "reply",  # answer with the route's `event` template (e.g. a Warning); the session goes on
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class CredentialSource(_Model):
    source: str = Field(alias="from", description="e.g. header.xi-api-key, query.token, message.xi_api_key")
    schemes: list[str] = Field(
        default_factory=list,
        description="accepted schemes before the credential (`Token x`), matched case-insensitively",
    )
    subprotocol: bool = Field(
        default=False, description="Sec-WebSocket-Protocol `scheme, credential` (browser clients)"
    )
    token_only: bool = Field(default=False, description="only gateway-minted tokens are accepted here")

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        if not _SOURCE_RE.match(v) or v.startswith(("path", "body", "form", "const")):
            raise ValueError("credentials come from header.<name>, query.<name> or message.<field>")
        return v


class TableFile(_Model):
    file: str = Field(description="path relative to the mappings directory")
    key: str = Field(default="voices", description="top-level key holding the id -> entry mapping")
    value: str | None = Field(default="gradium", description="field of each entry to use as the value")


class Table(_Model):
    entries: dict[str, Any] = Field(default_factory=dict)
    include: list[TableFile] = Field(default_factory=list)
    passthrough: str | None = Field(
        default=None, description="regex: values matching it that are not in the table pass through as they are"
    )
    case_insensitive: bool = False
    miss: ErrorKind = Field(default="invalid_request", description="error kind for a value not in the table")
    user_overrides: str | None = Field(
        default=None, description="which user config table merges over this one (`voices`)"
    )
    custom_ids: str | None = Field(
        default=None,
        description=(
            "also accept the caller's own ids of this kind (`voice`, `pronunciation`: see gateway/custom_ids.py), "
            "looked up as the Gradium uid they stand for"
        ),
    )


class Param(_Model):
    source: str | list[str] | None = Field(default=None, alias="from")
    type: Literal["string", "number", "integer", "boolean", "list", "object", "any"] = "string"
    required: bool = False
    default: Any = None
    table: str | None = None
    choices: list[Any] | None = None
    min: float | None = None
    max: float | None = None
    max_length: int | None = None
    error: ErrorKind | None = Field(default=None, description="error kind when this param is invalid")
    nullable_strings: bool = Field(default=True, description='treat the string "null" as absent (form fields)')
    message: str | None = Field(
        default=None, description="error message when this param is missing or invalid (instead of the generated one)"
    )
    item_field: str | None = Field(
        default=None,
        description=(
            "list of objects: `table` applies to this field of each item (e.g. `inputs[].voice_id`); the value "
            "the client sent stays as `<field>_requested`"
        ),
    )

    @model_validator(mode="after")
    def _item_field_on_lists(self) -> Param:
        if self.item_field is not None and (self.type != "list" or self.table is None):
            raise ValueError("item_field needs `type: list` and a `table`")
        return self

    @field_validator("source")
    @classmethod
    def _sources(cls, v: str | list[str] | None) -> str | list[str] | None:
        for s in [v] if isinstance(v, str) else v or []:
            if not _SOURCE_RE.match(s):
                raise ValueError(f"unknown source {s!r}: use one of {', '.join(SOURCES)} followed by .field")
        return v


class ErrorKindSpec(_Model):
    status: int = Field(ge=400, le=599)
    code: str
    type: str | None = None
    message: str | None = Field(default=None, description="default message when the engine has none better")
    close: int = Field(default=1008, ge=1000, le=4999, description="WebSocket close code")
    reason: str | None = Field(default=None, description="WebSocket close reason")


class ErrorSpec(_Model):
    kinds: dict[str, ErrorKindSpec]
    http_body: Any = Field(description="template for HTTP error bodies")
    http_headers: dict[str, Any] = Field(default_factory=dict)
    ws_message: Any = Field(default=None, description="template for the WS error message (null: close only)")
    ws_refuse_upgrade: bool = Field(
        default=False, description="answer auth failures on WS routes with an HTTP status instead of a 101"
    )
    ws_refuse_header: str | None = Field(default=None, description="header carrying the refusal message")
    params: dict[str, Param] = Field(
        default_factory=dict,
        description=(
            "request fields the error templates may use (from path, query or header; e.g. the API version "
            "that picks the error shape); a value that cannot be read is left out"
        ),
    )

    @field_validator("kinds")
    @classmethod
    def _all_kinds(cls, v: dict[str, ErrorKindSpec]) -> dict[str, ErrorKindSpec]:
        unknown = set(v) - set(ERROR_KINDS)
        if unknown:
            raise ValueError(f"unknown error kinds {sorted(unknown)}; known: {', '.join(ERROR_KINDS)}")
        missing = set(ERROR_KINDS) - set(v)
        if missing:
            raise ValueError(f"every error kind needs an entry; missing: {', '.join(sorted(missing))}")
        return v


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
        unknown = set(v) - set(ERROR_KINDS)
        if unknown:
            raise ValueError(f"unknown error kinds {sorted(unknown)}; known: {', '.join(ERROR_KINDS)}")
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


class Transform(_Model):
    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class GradiumSpec(_Model):
    kind: Literal["tts", "asr"]
    setup: dict[str, Any] = Field(default_factory=dict)
    text: Any = Field(default=None, description="HTTP TTS: the text to speak (template)")
    segments: Any = Field(
        default=None,
        description=(
            "HTTP TTS: template -> list of {text, setup, ...}: spoken as one Gradium request per segment, in "
            "order, each with its `setup` merged over the route's (e.g. its own voice), rendered as one stream "
            "whose times run on; the other fields reach the transform in a `segment` message"
        ),
    )
    audio_out: Any = Field(default=None, description="TTS: the client's audio format (template -> format dict)")
    audio_in: Any = Field(default=None, description="STT: the client's audio format (template; null = sniff)")
    audio_from: str = Field(
        default="body",
        pattern=r"^(body|form\.[^.\s]+)$",
        description="HTTP STT: the raw request body (streamed) or a multipart file part (`form.file`)",
    )
    upstream: Literal["ws", "rest"] = "ws"


class ResponseSpec(_Model):
    kind: Literal["audio", "json", "ndjson", "sse"] = "audio"
    content_type: str | None = Field(default=None, description="default: from the audio format or the kind")
    headers: dict[str, Any] = Field(default_factory=dict)
    sse_event: str | None = Field(
        default=None,
        description="sse: the field of each rendered message that names its `event:` line (default: the event name)",
    )


class Route(_Model):
    http: str | None = Field(default=None, description='"METHOD /path/{var}"')
    ws: str | None = Field(default=None, description='"/path/{var}" (GET + upgrade)')
    params: dict[str, Param] = Field(default_factory=dict)
    gradium: GradiumSpec | None = None
    static: Any = Field(default=None, description="answer with this rendered JSON, no Gradium session")
    builtin: str | None = Field(default=None, description="a named handler (catalogue, token minting)")
    builtin_options: dict[str, Any] = Field(default_factory=dict)
    transform: Transform | None = None
    render: dict[str, Any] = Field(default_factory=dict, description="event name -> template")
    response: ResponseSpec = Field(default_factory=ResponseSpec)
    websocket: WsSpec | None = None
    request_id_header: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> Route:
        if (self.http is None) == (self.ws is None):
            raise ValueError("a route has exactly one of `http` or `ws`")
        if self.http is not None and not re.match(r"^(GET|POST|PUT|DELETE|PATCH) /\S*$", self.http):
            raise ValueError('http must look like "POST /v1/path/{var}"')
        if self.ws is not None and not self.ws.startswith("/"):
            raise ValueError("ws must be a path starting with /")
        handlers = sum(x is not None for x in (self.gradium, self.static, self.builtin))
        if handlers != 1:
            raise ValueError("a route needs exactly one of `gradium`, `static` or `builtin`")
        if self.ws is not None and self.gradium is not None and self.websocket is None:
            raise ValueError("a ws route with a gradium session needs a `websocket` section")
        if self.gradium is not None and self.transform is None:
            raise ValueError("a gradium route needs a `transform` that turns Gradium messages into events")
        return self


class NativeKey(_Model):
    """Where a dialect carries its own conversation identity (specs/traffic.md §3.2)."""

    source: str = Field(alias="from", description="header.<name>, query.<name> or body.<field>")
    pairs: bool = Field(
        default=False, description="`key:value` items (Deepgram `extra`): the one named by `traffic.native_extra_key`"
    )


class LegacyShadowSpec(_Model):
    """What a shadow leg must not repeat or may not see (specs/traffic.md §4)."""

    strip_query: list[str] = Field(default_factory=list, description="side effects removed (Deepgram `callback`)")
    replace_query: dict[str, str] = Field(default_factory=dict, description="values replaced (Deepgram `tag`)")
    privacy: dict[str, Any] = Field(
        default_factory=dict,
        description="request field -> value that forbids shadowing (ElevenLabs `query.enable_logging: false`)",
    )
    end_of_input: list[Any] = Field(default_factory=list, description="frames that end a leg whose client vanished")


class LegacySpec(_Model):
    """Passthrough to the legacy vendor: how its key is presented (credentials are stripped from every
    position listed under `credentials`)."""

    auth_header: str = Field(description="header carrying the vendor key upstream")
    auth_value: str = Field(default="$key", description="its value; `$key` is the vendor key")
    native_sticky: list[NativeKey] = Field(default_factory=list)
    stitching: str | None = Field(
        default=None, description="request field listing earlier request ids that pin the side (ElevenLabs)"
    )
    response_id_header: str | None = Field(default=None, description="answer header carrying the request id")
    shadow: LegacyShadowSpec = Field(default_factory=LegacyShadowSpec)

    @field_validator("auth_value")
    @classmethod
    def _has_key(cls, v: str) -> str:
        if "$key" not in v:
            raise ValueError("auth_value must contain $key")
        return v


class Mapping(_Model):
    provider: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    credentials: list[CredentialSource]
    tables: dict[str, Table] = Field(default_factory=dict)
    errors: ErrorSpec
    routes: dict[str, Route]
    request_id_header: str | None = Field(default=None, description="header carrying the request id on replies")
    legacy: LegacySpec | None = Field(default=None, description="passthrough facts (specs/traffic.md §1)")
