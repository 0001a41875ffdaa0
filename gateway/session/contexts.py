"""The context table: a socket's Gradium requests, keyed by the provider's context id, in creation order.

A context id (`""` on single-request sockets) may have several requests in flight: with `contexts.on_end: keep`,
input after a flush or a `close_context` starts the next request under the same id while the previous
one still sends audio. Their output must reach the client in creation order, so each id has a queue of
requests; only its head's output goes out (Pipecat's per-context audio queues, drained in order). The
queue is bounded, as is the memory of cancelled ids and of state shared across a context's requests.

Request states:  OPEN --end of input--> INPUT_ENDED --its turn--> DRAINING --Gradium done--> DONE
                 (any) --cancelled--> CLEARED
A head request that is still OPEN already streams its output; DRAINING means nothing more will come
from the client for it, only from Gradium: the client is owed that output.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from gateway.audio.leg import AudioLeg
from gateway.audio.transcode import AudioError
from gateway.dialects.common import RequestContext, SessionPlan, plan_session
from gateway.dialects.textbuffer import WordBuffer
from gateway.errors import GatewayError

MAX_REMEMBERED = 4096  # per socket: cancelled context ids remembered, contexts with shared state kept
MAX_QUEUED = 256  # requests waiting under one context id behind the one being delivered


class ContextState(enum.Enum):
    OPEN = "open"
    INPUT_ENDED = "input_ended"
    DRAINING = "draining"
    DONE = "done"
    CLEARED = "cleared"


_OPEN = ContextState.OPEN  # read once per client frame (`accepting`): an enum class attribute is a slow lookup on 3.11


@dataclass(slots=True, eq=False)
class Request:
    """One Gradium request under a context id."""

    key: str
    seq: int  # creation order on the socket
    plan: SessionPlan
    scope: dict[str, Any]  # template scope: the request's params, context id, sequence id
    words: WordBuffer
    leg: AudioLeg | None = None  # STT: the client's audio on its way to Gradium
    message: dict[str, Any] | None = None  # the client message that opened it (its params)
    state: ContextState = ContextState.OPEN
    head: bool = False  # first under its key: its output goes to the client
    flush_id: int = 0
    segment: Any = None  # the `segment` its text belongs to (e.g. a dialogue line's voice)
    continued: bool = False  # ended by a `segment` change: the context goes on, its `end` is not shown
    timer: bool = False  # a buffer-delay flush is pending
    io: Any = field(default=None, repr=False)  # the driver's own state for it (stream, reader task)

    @property
    def accepting(self) -> bool:
        return self.state is _OPEN

    @property
    def owed(self) -> bool:
        """The client is waiting for this request's output and has nothing more to send for it."""
        return self.state in (ContextState.INPUT_ENDED, ContextState.DRAINING)


def new_request(ctx: RequestContext, key: str, params: dict[str, Any], table: ContextTable,
                message: dict[str, Any] | None) -> Request:
    """A request's plan (Gradium setup, formats, transform), template scope, text buffer and audio leg."""
    ws = ctx.route.ws
    assert ws is not None
    plan = plan_session(ctx, params, table.shared_state(key))
    scope = ctx.scope(params)
    scope["context_id"] = key or None
    leg = None
    if plan.kind == "asr":
        assert plan.info.gradium_in is not None
        try:
            leg = AudioLeg(plan.info.audio_in, plan.info.gradium_in)
        except AudioError as exc:
            raise GatewayError("unsupported_format", str(exc)) from None
    schedule = text_schedule(ws.text_schedule(scope)) if ws.text_schedule is not None else None
    table.seq += 1
    return Request(key, table.seq, plan, scope, WordBuffer(schedule), leg, message)


def text_schedule(value: Any) -> list[int] | None:
    """A rendered `websocket.text.schedule`: character counts, or None (whole words at once)."""
    if value is None:
        return None
    ok = isinstance(value, list) and value and all(
        isinstance(x, int | float) and not isinstance(x, bool) and x > 0 for x in value)
    if not ok:
        raise GatewayError("invalid_request", "the chunk schedule must be a list of positive numbers")
    return [int(x) for x in value]


class ContextTable:
    def __init__(self) -> None:
        self.queues: dict[str, deque[Request]] = {}
        self.shared: dict[str, dict[str, Any]] = {}  # per context id: state its successive requests share
        self.cleared: dict[str, None] = {}  # context ids cancelled on this socket (bounded)
        self.seq = 0

    def __bool__(self) -> bool:
        return bool(self.queues)

    def __len__(self) -> int:
        """Context ids in use (a context counts once, however many requests it has in flight)."""
        return len(self.queues)

    def requests(self) -> list[Request]:
        return [r for q in self.queues.values() for r in q]

    def active(self, key: str) -> Request | None:
        """The request under `key` still taking input."""
        q = self.queues.get(key)
        if q and q[-1].accepting:
            return q[-1]
        return None

    def owed(self) -> bool:
        return any(r.owed for q in self.queues.values() for r in q)

    def shared_state(self, key: str) -> dict[str, Any]:
        shared = self.shared.get(key)
        if shared is None:
            shared = self.shared[key] = {}
            if len(self.shared) > MAX_REMEMBERED:
                del self.shared[next(iter(self.shared))]
        return shared

    def add(self, req: Request) -> bool:
        """Queue `req` under its key; True when it is the head (its output may go out now)."""
        q = self.queues.setdefault(req.key, deque())
        if len(q) >= MAX_QUEUED:
            raise GatewayError("too_many_contexts", f"Too many requests waiting in context {req.key}")
        q.append(req)
        req.head = len(q) == 1
        if req.head and req.state is ContextState.INPUT_ENDED:
            req.state = ContextState.DRAINING
        return req.head

    def end_input(self, req: Request) -> None:
        req.state = ContextState.DRAINING if req.head else ContextState.INPUT_ENDED

    def finish(self, req: Request) -> Request | None:
        """`req` is done; the next request under its key, which becomes the head, if any."""
        req.state = ContextState.DONE
        q = self.queues.get(req.key)
        if q is None or req not in q:
            return None
        q.remove(req)
        if not q:
            del self.queues[req.key]
            if not self.shared.get(req.key, True):
                del self.shared[req.key]  # the context is over (its transform left nothing for a next request)
            return None
        nxt = q[0]
        if not nxt.head:
            nxt.head = True
            if nxt.state is ContextState.INPUT_ENDED:
                nxt.state = ContextState.DRAINING
            return nxt
        return None

    def drop(self, key: str, *, remember: bool) -> list[Request]:
        """Every request under `key` ends now (cancelled, or failed); `remember`: the id cannot come back."""
        q = self.queues.pop(key, None) or deque()
        for r in q:
            r.state = ContextState.CLEARED
        self.shared.pop(key, None)
        if remember:
            self.cleared[key] = None
            if len(self.cleared) > MAX_REMEMBERED:
                del self.cleared[next(iter(self.cleared))]
        return list(q)
