"""The mapping language: what a `mappings/<provider>.yaml` file may say, validated at load time.

A mapping describes `provider <-> Gradium` and nothing else:
- `credentials`: where a caller's key or token may be found;
- `tables`: value tables (voice ids, models, output formats), inline or from a file;
- `errors`: the provider's error kinds (status, code, WS close) and body/message templates;
- `routes`: for each endpoint, the request fields (`params`), the Gradium `setup` built from them,
  the audio formats, the WebSocket section (`websocket.py`), the named output transform and the
  templates that render its events (`render`), and response headers.

Templates are plain YAML values in which a string `$name` (or `$name.path`, optionally piped through
named value functions: `$speed | speed_to_padding_bonus`) is replaced by a value; keys whose value
comes out null are dropped.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from gateway.mapping.kinds import ERROR_KINDS, ErrorKind, known_kinds
from gateway.mapping.kinds import StrictModel as _Model
from gateway.mapping.websocket import WsSpec

SOURCES = ("path", "query", "header", "body", "form", "message", "const")
_SOURCE_RE = re.compile(rf"^({'|'.join(SOURCES)})(\.[^.\s]+)*$")


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

    @property
    def sources(self) -> list[str]:
        """Where the value may come from, in order (`from:` as one source or a list)."""
        return [self.source] if isinstance(self.source, str) else list(self.source or [])

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
        known_kinds(v)
        missing = set(ERROR_KINDS) - set(v)
        if missing:
            raise ValueError(f"every error kind needs an entry; missing: {', '.join(sorted(missing))}")
        return v


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
