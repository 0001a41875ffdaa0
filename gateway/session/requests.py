"""The request half of the session core: a socket's Gradium requests as the protocol sees them (pure).

`Requests` is the state a `SessionCore` (`core.py`) is made of, and what happens to a request: it is
opened (its plan, credentials, context table entry), its text is buffered and flushed, its input ends,
it is cleared or fails alone, its Gradium messages become client frames, and it finishes. `core.py`
adds the session's entry points, its lifecycle and the client's messages on top. No I/O, no `await`:
every operation appends commands to `_out` (see `commands.py`).
"""

from __future__ import annotations

import enum
from typing import Any

from gateway.auth import Authenticator, Credential, find_credential
from gateway.dialects.common import RequestContext
from gateway.errors import GatewayError
from gateway.mapping.params import RequestData
from gateway.mapping.transforms import Event
from gateway.session import commands as cmd
from gateway.session.contexts import ContextState, ContextTable, Request, new_request
from gateway.session.render import Renderer
from gateway.upstream import protocol as gradium

GOING_AWAY = 1001
MAX_FLUSH_DELAY_MS = 60_000.0


class SessionState(enum.Enum):
    OPENING = "opening"
    OPEN = "open"
    DRAINING = "draining"
    CLOSED = "closed"


_CLOSED = SessionState.CLOSED  # read per Gradium message: an enum class attribute is a slow lookup on 3.11


class Requests:
    def __init__(self, ctx: RequestContext, req: RequestData, auth: Authenticator, cred: Credential | None,
                 t: float = 0.0) -> None:
        assert ctx.route.ws is not None
        self.ctx = ctx
        self.route = ctx.route
        self.ws = ctx.route.ws
        self.spec = ctx.route.ws.spec
        self.req = req
        self.auth = auth
        self.cred = cred
        self.key: str | None = None  # the Gradium key, once judged
        self.preauth: str | GatewayError | None = None  # set by the driver before `prepare`/`start`
        self.state = SessionState.OPENING
        self.table = ContextTable()
        self.sequence = 0
        self.accepting = True
        self.going_away = False
        self.handling: str | None = None  # context id of the client message being handled
        self.since = t  # idle: when the client's silence started counting (or the drain started)
        self.upstream_request_id: str | None = None
        self.status = "ok"  # how the session ended: "ok" or the error kind that ended it
        self.error: GatewayError | None = None
        self.report_actions = True  # `Acted` commands (observers only): the driver turns them off if unheard
        self._binary_is_audio: bool | None = None  # see `SessionCore._binary_audio`
        self._out: list[cmd.Command] = []
        self.render = Renderer(ctx)
        # read at `start`, after the upgrade: it reads every handshake param, which the 101 need not wait for
        self.idle_s: float | None = None

    # -- Gradium -> client (the hot path: one call per Gradium message that has events) ---------------

    def gradium(self, r: Request, events: list[Event]) -> list[cmd.Command]:
        """`r`'s transform turned one Gradium message into `events`: what the client gets (what
        `handle(GradiumEvents(r, events))` does, with no event object and no dispatch)."""
        if self.state is _CLOSED:
            return []
        self._out = out = []
        try:
            self.render.events(r, events, self.sequence, out)
        except GatewayError as err:
            self._error(err)
        return out

    def _error(self, err: GatewayError) -> None:
        """A GatewayError while handling an event: the context's (`context_errors: report`) or the session's."""
        if self.spec.contexts.on_error == "report" and self.handling is not None:
            self._context_error(self.handling, err)
        else:
            self._fail(err)

    def _fail(self, err: GatewayError) -> None:
        spec = self.ctx.mapping.errors.kinds[err.kind]
        self.status, self.error = err.kind, err
        self.render.error(err, None, self._out)
        self._close(spec.close, (spec.reason or "").encode()[:120])

    def _close(self, code: int, reason: bytes = b"") -> None:
        self.state = SessionState.CLOSED
        self._out.append(cmd.Close(code, reason))

    def _drained(self) -> None:
        """Nothing more is owed: close if the session was waiting for that."""
        if self.state is SessionState.DRAINING and not self.table:
            self._close(GOING_AWAY if self.going_away else 1000)

    def _session_scope(self) -> dict[str, Any]:
        return self.render.session_scope(self.req, self.sequence)

    def _upstream_key(self) -> str:
        """The Gradium key for the caller: the one the driver resolved asynchronously at the handshake
        (`preauth`: single-use tokens are claimed there, in Redis when the fleet shares state), else the
        synchronous check (a credential that came in the first message)."""
        if self.preauth is not None:
            if isinstance(self.preauth, GatewayError):
                raise self.preauth
            return self.preauth
        return self.auth.upstream_key(self.cred, scope=f"{self.ctx.mapping.provider}:{self.route.name}")

    # -- requests --------------------------------------------------------------------------------

    def _open(self, key: str, message: dict[str, Any] | None, *, ready: bool = False) -> Request:
        limit = self.spec.contexts.max
        if limit is not None and key not in self.table.queues and len(self.table) >= limit:
            raise GatewayError("too_many_contexts",
                               f"Maximum simultaneous contexts per WebSocket connection exceeded ({limit})")
        req = RequestData(self.req.path, self.req.query, self.req.header, message=message)
        if self.key is None:
            if self.cred is None and message is not None:
                self.cred = find_credential(self.ctx.mapping.credentials, req)
            self.key = self._upstream_key()
        # with no message, the params are the handshake's, which the session scope reads too
        params = self.render.handshake_params(self.req) if message is None else self._params(req)
        r = new_request(self.ctx, key, params, self.table, message)
        self.table.add(r)
        self._out.append(cmd.Open(r, ready))
        if self.state is not SessionState.OPENING:
            self._out.append(cmd.Read(r))
            if r.head:
                self._out.append(cmd.Turn(r))
        return r

    def _params(self, req: RequestData) -> dict[str, Any]:
        """A request's params with its first message: the handshake's (read once per session) with the
        message-sourced ones read again, which is what reading them all gives when the handshake's are
        valid; else all of them, so the error is the first invalid param's, as ever."""
        try:
            params = self.render.handshake_params(self.req)
        except GatewayError:
            return self.route.read_params(req)
        for name, read in self.route.message_params.items():
            params[name] = read(req)
        return params

    def _flush(self, r: Request) -> None:
        if r.plan.kind == "tts":
            self._out.append(cmd.SendGradium(r, gradium.text_flush(r.words.drain())))
            return
        self._out.append(cmd.FlushAudio(r))
        r.flush_id += 1
        self._out.append(cmd.SendGradium(r, gradium.flush(r.flush_id)))
        self._events(r, r.plan.transform.on_action("flush", {"flush_id": r.flush_id}))

    def _buffer_delay(self, r: Request, ms: Any) -> None:
        """`flush_after_ms` (Cartesia `max_buffer_delay_ms`): text that waited this long for more text is
        flushed to Gradium (its inline flush), so a pause in the client's input never holds audio back.
        0 flushes with every message; None leaves the buffering to Gradium."""
        if r.timer:
            r.timer = False
            self._out.append(cmd.CancelTimer(r))
        if not isinstance(ms, int | float) or isinstance(ms, bool) or ms < 0:
            return
        if ms == 0:
            self._flush(r)
            return
        r.timer = True
        self._out.append(cmd.StartTimer(r, min(float(ms), MAX_FLUSH_DELAY_MS) / 1000))

    def _end_of_input(self, r: Request) -> None:
        if r.plan.kind == "tts":
            rest = r.words.drain()
            if rest:
                self._out.append(cmd.SendGradium(r, gradium.text(rest)))
        else:
            self._out.append(cmd.FlushAudio(r))
        self._out.append(cmd.SendGradium(r, gradium.end_of_stream()))
        if r.timer:
            r.timer = False
            self._out.append(cmd.CancelTimer(r))
        self.table.end_input(r)
        r.scope["sequence_id"] = self.sequence  # e.g. Deepgram's Flushed counts flushes from 0
        self.sequence += 1
        if self.spec.contexts.on_end == "close":
            self.accepting = False  # the socket ends with this request

    def _clear(self, key: str) -> None:
        """Drop a request's pending text and audio at once (Deepgram Clear, Cartesia cancel)."""
        for r in self.table.drop(key, remember=not self.spec.contexts.reuse_cleared):
            self._out.append(cmd.Drop(r))
        self._out.append(cmd.ContextOver(key or None, "cleared"))
        scope = self._session_scope()
        scope["context_id"] = key or None
        self.render.event(scope, "cleared", {}, self._out)

    def _context_error(self, key: str, err: GatewayError, *, failed: bool = False) -> None:
        """`contexts.on_error: report`: the error message carries the context id; only that context ends."""
        for r in self.table.drop(key, remember=False):
            self._out.append(cmd.Drop(r, failed=failed))
        self._out.append(cmd.ContextOver(key or None, "error"))
        self.render.error(err, key, self._out)
        self._drained()

    def _events(self, r: Request, events: list[Any]) -> None:
        if events:  # most client audio chunks give none: no renderer call for them
            self.render.events(r, events, self.sequence, self._out)

    def _done(self, ev: cmd.RequestDone) -> None:
        r = ev.req
        if r.state is ContextState.CLEARED:
            return
        if ev.upstream_request_id is not None:
            self.upstream_request_id = ev.upstream_request_id
        nxt = self.table.finish(r)
        if nxt is not None:
            self._out.append(cmd.Turn(nxt))
        if r.key not in self.table.queues:
            self._out.append(cmd.ContextOver(r.key or None, "done", ev.upstream_request_id))
        if not self.table.owed():
            self.since = ev.t  # the client's silence counts from here
        if self.spec.contexts.on_end == "close":
            self._close(GOING_AWAY if self.going_away else 1000)
        else:
            self._drained()
        # last: releasing the finished stream may wait on Gradium (its socket's close handshake), and neither
        # the client's close nor the next request's turn waits for that
        self._out.append(cmd.Drop(r))
