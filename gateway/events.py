"""Session events: what observers (metrics, logs, shadowing) see of every request and WebSocket session.

Each event is a small dataclass; the hook an addon implements is named after the class
(`SessionStart` -> `session_start`, see `hook_name`). Every event carries the `Flow` it belongs to, the
one object that lives as long as the request or socket: it names the route, provider and target, and has
a `data` dict where an addon keeps its own per-session state (a shadow leg, a timer).

Hooks are called synchronously, in the session's own task, on its hot path: they must be cheap and must
not block. An addon with slow work (network, codec) queues it and returns (`gateway/addons.py`).
Times are `time.monotonic()` seconds.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

Transport = Literal["http", "ws"]
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def new_request_id() -> str:
    """A random (version 4) UUID's text, like `str(uuid.uuid4())`, without building the UUID object: made
    for every request, before its upstream call."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


@dataclass(slots=True, eq=False)
class Flow:
    """One request (HTTP) or one client socket (WebSocket), from its start to its end."""

    provider: str
    route: str
    transport: Transport
    target: str = "gradium"  # who answers: "gradium" (translated) or e.g. "legacy" (a passthrough)
    request_id: str = field(default_factory=new_request_id)
    started: float = field(default_factory=time.monotonic)
    headless: bool = False  # no client socket: driven programmatically (a shadow leg, a test)
    data: dict[str, Any] = field(default_factory=dict)  # per-addon state, keyed by the addon's own name

    def elapsed_ms(self, now: float | None = None) -> float:
        return round(((now if now is not None else time.monotonic()) - self.started) * 1000, 2)


@dataclass(slots=True)
class SessionStart:
    """The request was routed (HTTP) or the socket accepted (WebSocket, after the upgrade)."""

    hook: ClassVar[str] = "session_start"
    flow: Flow


@dataclass(slots=True)
class ClientFrame:
    """A frame from the client, as received (text as str, binary as bytes), before any decoding.

    On HTTP routes the request is one: its JSON body, else empty; audio streamed to Gradium (a raw body
    or a form's file) then comes as one more frame per chunk."""

    hook: ClassVar[str] = "client_frame"
    flow: Flow
    data: str | bytes
    t: float


@dataclass(slots=True)
class ActionTaken:
    """A client message matched an inbound rule and its action was performed on a context.

    On HTTP routes: `text` then `end_of_stream` (TTS), `audio` per chunk then `end_of_stream` (STT),
    `builtin` or `static` for routes with no Gradium session; `context` is None."""

    hook: ClassVar[str] = "action_taken"
    flow: Flow
    action: str
    context: str | None


@dataclass(slots=True)
class ClientOutput:
    """Something went to the client: a WebSocket frame, or a chunk of an HTTP body (audio, NDJSON, SSE,
    or a whole JSON body). `first` marks the session's first output (time to first output)."""

    hook: ClassVar[str] = "client_output"
    flow: Flow
    data: str | bytes
    size: int
    t: float
    first: bool


@dataclass(slots=True)
class FirstOutput:
    """The session's first output went to the client (time to first output); once per session. An addon
    that only wants this subscribes here, not to `client_output`, which is called for every frame."""

    hook: ClassVar[str] = "first_output"
    flow: Flow
    t: float


@dataclass(slots=True)
class ContextEnd:
    """One context (a Gradium request on a socket) is over: `done`, `cleared` (cancelled) or `error`."""

    hook: ClassVar[str] = "context_end"
    flow: Flow
    context: str | None
    reason: str
    upstream_request_id: str | None = None


@dataclass(slots=True, frozen=True)
class Degraded:
    """Part of an answer was left out because Gradium could not give it (its voice list, the account's
    credits); the rest of the answer went out. Carried by the `SessionEnd`."""

    what: str  # e.g. "catalogue.gradium_voices"
    kind: str  # the error kind Gradium's failure had
    message: str | None = None


NOT_UPGRADED = "not_upgraded"  # a `SessionEnd`'s kind: a WebSocket route's request that never upgraded


@dataclass(slots=True)
class SessionEnd:
    """The request was answered or the socket closed.

    `status`: for HTTP the response status as a string ("200", "404"); for WebSocket "ok",
    "client_closed", "client_gone" or the error kind that ended it. `close_code`: the WebSocket close code
    the client got (None for HTTP, or when the client went away first). `kind`/`message`: the error, if
    one ended it; `exc`: an unexpected exception (a bug), for its traceback; `degraded`: what the answer
    lacks (see `Degraded`)."""

    hook: ClassVar[str] = "session_end"
    flow: Flow
    status: str
    close_code: int | None = None
    http_status: int | None = None
    kind: str | None = None
    message: str | None = None
    frames_in: int = 0
    events_out: int = 0
    bytes_out: int = 0
    first_output: float | None = None  # monotonic time of the first output
    upstream_request_id: str | None = None
    upstream_format: str | None = None
    exc: BaseException | None = None
    degraded: tuple[Degraded, ...] = ()
    t: float = field(default_factory=time.monotonic)

    @property
    def first_output_ms(self) -> float | None:
        return None if self.first_output is None else self.flow.elapsed_ms(self.first_output)


Event = SessionStart | ClientFrame | ActionTaken | ClientOutput | FirstOutput | ContextEnd | SessionEnd
EVENT_TYPES: tuple[type, ...] = (SessionStart, ClientFrame, ActionTaken, ClientOutput, FirstOutput, ContextEnd,
                                 SessionEnd)
HOOKS: tuple[str, ...] = tuple(t.hook for t in EVENT_TYPES)  # type: ignore[attr-defined]


def hook_name(cls: type) -> str:
    """`SessionStart` -> `session_start`: how an addon method is named for an event class."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()
