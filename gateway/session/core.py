"""The WebSocket session core: events in, commands out, no I/O and no `await`.

One `SessionCore` per client socket. It reads the route's compiled `websocket` section and decides
everything the protocol says: which rule a client message matches and what its action does, when a
Gradium request (a *context* request, see `contexts.py`) starts and ends, whose output may go out,
what each event renders to, when the socket closes and with which code. The driver (`driver.py`) does
what the returned commands say and feeds back what happened.

Session states:  OPENING --upgrade done (and, for `open: first_message`, that message)--> OPEN
                 OPEN --`close` action / shutdown / `contexts.on_end: close` input ended--> DRAINING
                 (any) --Close command--> CLOSED
The idle timer measures the client's silence only while the client is owed nothing: not while a
request whose input ended is still being delivered, and never while draining (that wait has its own
deadline, `DRAIN_TIMEOUT_S`).
"""

from __future__ import annotations

import enum
from typing import Any

from gateway.auth import Authenticator, Credential, find_credential
from gateway.dialects.common import RequestContext
from gateway.errors import GatewayError
from gateway.mapping.params import RequestData
from gateway.session import commands as cmd
from gateway.session import inbound
from gateway.session.contexts import ContextState, ContextTable, Request, new_request
from gateway.session.render import Renderer
from gateway.upstream import protocol as gradium

FIRST_MESSAGE_TIMEOUT_S = 20.0
DRAIN_TIMEOUT_S = 120.0  # a request whose input ended must finish within this (Gradium stuck)
MAX_FLUSH_DELAY_MS = 60_000.0
GOING_AWAY = 1001
MAX_CONTEXT_ID = 256


class SessionState(enum.Enum):
    OPENING = "opening"
    OPEN = "open"
    DRAINING = "draining"
    CLOSED = "closed"


class SessionCore:
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
        self._out: list[cmd.Command] = []
        self.render = Renderer(ctx)
        self.idle_s = self.render.idle_seconds(req)

    # -- entry points ----------------------------------------------------------------------------

    def prepare(self) -> list[cmd.Command]:
        """Before the upgrade, on routes that refuse with an HTTP status: what can be judged now.
        Raises the GatewayError to refuse with."""
        self._out = []
        if self.spec.open == "connect":
            self._open("", None, ready=True)
        elif self.spec.open == "on_demand":
            # contexts start later, from their messages: only the credentials can be judged now
            self.key = self._upstream_key()
        return self._out

    def start(self, t: float) -> list[cmd.Command]:
        """The upgrade is done."""
        self.since = t
        return self._run(self._start)

    def handle(self, ev: cmd.SessionEvent) -> list[cmd.Command]:
        if self.state is SessionState.CLOSED:
            return []
        return self._run(self._dispatch, ev)

    def _upstream_key(self) -> str:
        """The Gradium key for the caller: the one the driver resolved asynchronously at the handshake
        (`preauth`: single-use tokens are claimed there, in Redis when the fleet shares state), else the
        synchronous check (a credential that came in the first message)."""
        if self.preauth is not None:
            if isinstance(self.preauth, GatewayError):
                raise self.preauth
            return self.preauth
        return self.auth.upstream_key(self.cred, scope=f"{self.ctx.mapping.provider}:{self.route.name}")

    def deadline(self) -> float | None:
        """When the watchdog should next `Tick` (monotonic seconds), or None: nothing to watch."""
        if self.state is SessionState.OPENING:
            return self.since + FIRST_MESSAGE_TIMEOUT_S
        if self.state is SessionState.DRAINING or self.table.owed():
            return self.since + DRAIN_TIMEOUT_S
        if self.idle_s:
            return self.since + self.idle_s
        return None

    # -- plumbing --------------------------------------------------------------------------------

    def _run(self, fn: Any, *args: Any) -> list[cmd.Command]:
        self._out = out = []
        try:
            fn(*args)
        except GatewayError as err:
            if self.spec.contexts.on_error == "report" and self.handling is not None:
                self._context_error(self.handling, err)
            else:
                self._fail(err)
        return out

    def _dispatch(self, ev: cmd.SessionEvent) -> None:
        if isinstance(ev, cmd.GradiumEvents):
            self._events(ev.req, ev.events)
        elif isinstance(ev, cmd.ClientMessage):
            self.handling = None
            if self.state is SessionState.OPENING:
                self._first(ev)
            else:
                self._message(inbound.decode(self.ws, ev.kind, ev.data), ev.t)
        elif isinstance(ev, cmd.RequestDone):
            self._done(ev)
        elif isinstance(ev, cmd.TimerFired):
            ev.req.timer = False
            if ev.req.accepting and ev.req.state is not ContextState.CLEARED:
                self._flush(ev.req)
        elif isinstance(ev, cmd.Failed):
            if ev.req is not None and self.spec.contexts.on_error == "report":
                if ev.req.state is not ContextState.CLEARED:
                    self._context_error(ev.req.key, ev.err, failed=True)
            else:
                self._fail(ev.err)
        elif isinstance(ev, cmd.Tick):
            self._tick(ev.t)
        elif isinstance(ev, cmd.Shutdown):
            self.going_away = True
            self._close_gracefully()

    def _session_scope(self) -> dict[str, Any]:
        return self.render.session_scope(self.req, self.sequence)

    # -- session lifecycle -----------------------------------------------------------------------

    def _start(self) -> None:
        if not self.table and self.spec.open == "first_message":
            return  # OPENING until the first message (it carries the params and maybe the key)
        if not self.table and self.spec.open == "connect":
            self._open("", None)
        self._begin()

    def _first(self, ev: cmd.ClientMessage) -> None:
        first = inbound.decode(self.ws, ev.kind, ev.data)
        self._open("", first if isinstance(first, dict) else None)
        self._begin()
        self._message(first, ev.t)

    def _begin(self) -> None:
        if self.spec.open == "on_demand" and self.key is None and self.cred is not None:
            # the handshake carried a credential (header, query token): judge it now, and let the
            # shared Gradium socket open before the first context needs it
            self.key = self._upstream_key()
        self.state = SessionState.OPEN
        if self.spec.contexts.multiplex and self.key is not None:
            self._out.append(cmd.WarmUp())
        if self.ws.greeting is not None:
            self.render.client(self.ws.greeting(self._session_scope()), self._out)
        for r in self.table.requests():
            self._out.append(cmd.Read(r))
            if r.head:
                self._out.append(cmd.Turn(r))

    def _close(self, code: int, reason: bytes = b"") -> None:
        self.state = SessionState.CLOSED
        self._out.append(cmd.Close(code, reason))

    def _drained(self) -> None:
        """Nothing more is owed: close if the session was waiting for that."""
        if self.state is SessionState.DRAINING and not self.table:
            self._close(GOING_AWAY if self.going_away else 1000)

    def _fail(self, err: GatewayError) -> None:
        spec = self.ctx.mapping.errors.kinds[err.kind]
        self.status, self.error = err.kind, err
        self.render.error(err, None, self._out)
        self._close(spec.close, (spec.reason or "").encode()[:120])

    def _tick(self, t: float) -> None:
        deadline = self.deadline()
        if deadline is None or t < deadline:
            return
        if self.state is SessionState.OPENING:
            raise GatewayError("idle_timeout", "No initial message received")
        if self.state is SessionState.DRAINING or self.table.owed():
            raise GatewayError("upstream_error", "Gradium did not finish in time")
        idle = self.spec.idle
        assert idle is not None and self.idle_s is not None
        raise GatewayError(idle.error, idle.message or f"No input received within {self.idle_s:g} seconds")

    # -- client messages -------------------------------------------------------------------------

    def _message(self, data: Any, t: float) -> None:
        rule = inbound.match(self.ws, data)
        if rule is None or rule.action == "ignore":
            return
        action = rule.action
        self.since = t
        fields: dict[str, Any] = {}
        if rule.fields is not None:
            scope = self._session_scope()
            scope["message"] = data
            fields = rule.fields(scope) or {}
        key = "" if fields.get("context") is None else str(fields["context"])
        if len(key) > MAX_CONTEXT_ID:
            # refused before it becomes `handling`: a context id is echoed on every message (amplification)
            raise GatewayError("invalid_message", f"context_id is longer than {MAX_CONTEXT_ID} characters")
        if "context" in fields:
            self.handling = key
        self._out.append(cmd.Acted(action, key or None))
        if action == "error":
            raise GatewayError(rule.error or "invalid_message", rule.message or "Unexpected message")
        if action == "keepalive" or not self.accepting:
            return
        if action == "close":
            self._close_gracefully()
            return
        if action == "clear":
            self._clear(key)
            return
        if action == "reply":
            scope = self._session_scope()
            scope["message"] = data
            self.render.event(scope, rule.event or "", fields, self._out)
            return
        r = self.table.active(key)
        if action == "control":
            if r is not None:
                self._events(r, r.plan.transform.on_action("control", fields))
            return
        if r is None:
            if action == "end_of_stream":
                return  # nothing open under that id
            if key in self.table.cleared:
                raise GatewayError("invalid_message", f"Context {key} was cancelled; start a new context_id")
            r = self._open(key, data if isinstance(data, dict) else None)
        if action == "text" and ("parts" in fields or fields.get("segment") is not None):
            r = self._text_parts(r, key, fields)
        if action == "audio":
            if r.leg is None:
                raise GatewayError("invalid_message", "This socket does not take audio")
            chunk = inbound.audio_bytes(data if isinstance(data, bytes | bytearray) else fields.get("audio"))
            if chunk:
                self._out.append(cmd.SendAudio(r, chunk))
            fields["audio"] = chunk
            if fields.get("flush"):  # audio and a flush in one message (ElevenLabs `commit: true`)
                self._events(r, r.plan.transform.on_action(action, fields))
                self._flush(r)
                return
        elif action == "text":
            text = fields.get("text")
            if text is not None and not isinstance(text, str):
                raise GatewayError("invalid_message", "text must be a string")
            ready = r.words.push(text or "", bool(fields.get("trigger")))
            if ready:
                self._out.append(cmd.SendGradium(r, gradium.text(ready)))
            if fields.get("end"):
                # text and the end of this request's input in one message (Cartesia `continue: false`, or a
                # flush that the mapping turns into the end of a request); the transform hears it first
                self._events(r, r.plan.transform.on_action(action, fields))
                self._end_of_input(r)
                return
            if fields.get("flush"):
                self._flush(r)
            elif text and r.plan.kind == "tts":
                self._buffer_delay(r, fields.get("flush_after_ms", self.spec.text.flush_after_ms))
        elif action == "flush":
            self._flush(r)
            return  # _flush tells the transform, with the flush id
        elif action == "end_of_stream":
            self._end_of_input(r)
        self._events(r, r.plan.transform.on_action(action, fields))

    def _text_parts(self, r: Request, key: str, fields: dict[str, Any]) -> Request:
        """`text` with `parts` ([{text, segment}]) or a `segment` (a dialogue line's voice): a new segment
        ends the context's request (its `end` hidden) and starts the next under the same key, its params
        read from the context's first message with `segment` set. The last part goes on as `text`."""
        parts = fields.pop("parts", None)
        if parts is None:
            parts = [{"text": fields.get("text"), "segment": fields.get("segment")}]
        if not isinstance(parts, list) or not parts or not all(isinstance(p, dict) for p in parts):
            raise GatewayError("invalid_message", "text parts must be a non-empty list of objects")
        for i, part in enumerate(parts):
            segment = part.get("segment")
            if segment is not None and r.segment is not None and segment != r.segment:
                r.continued = True
                self._end_of_input(r)
                r = self._open(key, {**(r.message or {}), "segment": segment})
                self._events(r, r.plan.transform.on_action("continue", {}))
            if segment is not None:
                r.segment = segment
            text = part.get("text")
            if text is not None and not isinstance(text, str):
                raise GatewayError("invalid_message", "text must be a string")
            if i == len(parts) - 1:
                fields["text"] = text
            elif text and (ready := r.words.push(text)):
                self._out.append(cmd.SendGradium(r, gradium.text(ready)))
        return r

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
        params = self.route.read_params(req)
        r = new_request(self.ctx, key, params, self.table, message)
        self.table.add(r)
        self._out.append(cmd.Open(r, ready))
        if self.state is not SessionState.OPENING:
            self._out.append(cmd.Read(r))
            if r.head:
                self._out.append(cmd.Turn(r))
        return r

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

    def _close_gracefully(self) -> None:
        """Finish every open request, then close (ElevenLabs close_socket, Deepgram Close, shutdown)."""
        if self.state is SessionState.OPENING:
            self._close(GOING_AWAY if self.going_away else 1000)
            return
        self.state = SessionState.DRAINING
        self.accepting = False
        for r in self.table.requests():
            if r.accepting:
                self._end_of_input(r)
        self._drained()

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

    # -- Gradium -> client -----------------------------------------------------------------------

    def _events(self, r: Request, events: list[Any]) -> None:
        self.render.events(r, events, self.sequence, self._out)

    def _done(self, ev: cmd.RequestDone) -> None:
        r = ev.req
        if r.state is ContextState.CLEARED:
            return
        if ev.upstream_request_id is not None:
            self.upstream_request_id = ev.upstream_request_id
        nxt = self.table.finish(r)
        self._out.append(cmd.Drop(r))
        if nxt is not None:
            self._out.append(cmd.Turn(nxt))
        if r.key not in self.table.queues:
            self._out.append(cmd.ContextOver(r.key or None, "done", ev.upstream_request_id))
        if not self.table.owed():
            self.since = ev.t  # the client's silence counts from here
        if self.spec.contexts.on_end == "close":
            self._close(GOING_AWAY if self.going_away else 1000)
            return
        self._drained()
