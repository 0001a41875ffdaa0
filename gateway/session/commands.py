"""What the session core asks its driver to do, and what the driver tells the core.

The core (`core.py`) never awaits: it takes one event, updates its state, and returns a list of
commands; the driver (`driver.py`) performs them in order (sockets, tasks, timers, codec work) and
feeds what happens back as events. A playbook test reads as these two lists alternating.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.errors import GatewayError
from gateway.session.contexts import Request

# -- commands (core -> driver) ----------------------------------------------------------------------


@dataclass(slots=True)
class Open:
    """Start Gradium request `req` (its setup is `req.plan.setup`); `ready`: wait for Gradium's answer
    now, before the upgrade (routes that refuse with an HTTP status)."""

    req: Request
    ready: bool = False


@dataclass(slots=True)
class Read:
    """Start delivering `req`'s Gradium messages (as `GradiumEvents`) once it is its turn."""

    req: Request


@dataclass(slots=True)
class Turn:
    """`req` is now first under its context id: its output may go to the client."""

    req: Request


@dataclass(slots=True)
class SendGradium:
    """A message to Gradium on `req`'s stream (text, flush, end_of_stream...)."""

    req: Request
    msg: dict[str, Any]


@dataclass(slots=True)
class SendAudio:
    """Client audio for `req`: transcoded (off the loop when heavy), base64, sent to Gradium."""

    req: Request
    chunk: bytes


@dataclass(slots=True)
class FlushAudio:
    """The transcoder's tail for `req` goes to Gradium (before a flush or the end of input)."""

    req: Request


@dataclass(slots=True)
class SendClient:
    """A frame to the client: serialized JSON text, or binary audio."""

    data: bytes
    binary: bool = False


@dataclass(slots=True)
class StartTimer:
    """Fire `TimerFired(req)` after `seconds` (a buffer-delay flush); replaces `req`'s pending timer."""

    req: Request
    seconds: float


@dataclass(slots=True)
class CancelTimer:
    req: Request


@dataclass(slots=True)
class Drop:
    """`req` stops now: its reader cancelled, its Gradium stream closed. `failed`: its upstream failed."""

    req: Request
    failed: bool = False


@dataclass(slots=True)
class WarmUp:
    """Open the socket shared by this session's requests now, so its handshake is not in the first
    request's time to first audio."""


@dataclass(slots=True)
class Acted:
    """For observers: a client message's action was performed (`events.ActionTaken`)."""

    action: str
    context: str | None


@dataclass(slots=True)
class ContextOver:
    """For observers: every request under a context id is over (`events.ContextEnd`)."""

    context: str | None
    reason: str
    upstream_request_id: str | None = None


@dataclass(slots=True)
class Close:
    """Close the client socket with `code` (the session is over)."""

    code: int
    reason: bytes = b""


Command = (Open | Read | Turn | SendGradium | SendAudio | FlushAudio | SendClient | StartTimer | CancelTimer | Drop
           | WarmUp | Acted | ContextOver | Close)


# -- events (driver -> core) ------------------------------------------------------------------------


@dataclass(slots=True)
class ClientMessage:
    """A client frame as read: `kind` is port.TEXT, port.BINARY or port.TOO_BIG."""

    kind: str
    data: str | bytes
    t: float = 0.0


@dataclass(slots=True)
class GradiumEvents:
    """`req`'s transform turned one Gradium message into these events."""

    req: Request
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


@dataclass(slots=True)
class RequestDone:
    """`req`'s Gradium stream ended (end_of_stream, or closed)."""

    req: Request
    t: float = 0.0
    upstream_request_id: str | None = None


@dataclass(slots=True)
class Failed:
    """Something failed doing I/O for the session: a Gradium request (`req` set) or the session itself."""

    err: GatewayError
    req: Request | None = None


@dataclass(slots=True)
class TimerFired:
    req: Request


@dataclass(slots=True)
class Tick:
    """The watchdog's clock: the core checks its idle and drain deadlines against `t`."""

    t: float


@dataclass(slots=True)
class Shutdown:
    """The gateway is stopping: finish what is owed, then close as the dialect says a server going away does."""


SessionEvent = ClientMessage | GradiumEvents | RequestDone | Failed | TimerFired | Tick | Shutdown
