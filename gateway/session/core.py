"""The WebSocket session core: events in, commands out, no I/O and no `await`.

One `SessionCore` per client socket. It reads the route's compiled `websocket` section and decides
everything the protocol says: which rule a client message matches and what its action does, when a
Gradium request (a *context* request, see `contexts.py`) starts and ends, whose output may go out,
what each event renders to, when the socket closes and with which code. The driver (`driver.py`) does
what the returned commands say and feeds back what happened.

Session states:  OPENING --upgrade done (and, for `open: first_message`, that message)--> OPEN
                 OPEN --`close` action / shutdown / `on_end: close` input ended--> DRAINING
                 (any) --Close command--> CLOSED
The idle timer measures the client's silence only while the client is owed nothing: not while a
request whose input ended is still being delivered, and never while draining (that wait has its own
deadline, `DRAIN_TIMEOUT_S`).
"""

from __future__ import annotations

import enum
from typing import Any

import orjson

from gateway.auth import Authenticator, Credential, find_credential
from gateway.dialects.common import RequestContext, error_scope, plan_session, render_event
from gateway.dialects.textbuffer import WordBuffer
from gateway.errors import GatewayError
from gateway.mapping.params import RequestData
from gateway.mapping.template import Messages
from gateway.mapping.transforms import SEND_GRADIUM, Event
from gateway.session import inbound
from gateway.session.commands import (
    Acted,
    CancelTimer,
    ClientMessage,
    Close,
    Command,
    ContextOver,
    Drop,
    Failed,
    FlushAudio,
    GradiumEvents,
    Open,
    Read,
    RequestDone,
    SendAudio,
    SendClient,
    SendGradium,
    SessionEvent,
    Shutdown,
    StartTimer,
    Tick,
    TimerFired,
    Turn,
    WarmUp,
)
from gateway.session.contexts import ContextState, ContextTable, Request
from gateway.upstream import protocol as gradium

FIRST_MESSAGE_TIMEOUT_S = 20.0
DRAIN_TIMEOUT_S = 120.0  # a request whose input ended must finish within this (Gradium stuck)
MAX_FLUSH_DELAY_MS = 60_000.0
GOING_AWAY = 1001


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
        self._scope: dict[str, Any] | None = None
        self._out: list[Command] = []
        self.idle_s = self._idle_seconds()

    # -- entry points ----------------------------------------------------------------------------

    def prepare(self) -> list[Command]:
        """Before the upgrade, on routes that refuse with an HTTP status: what can be judged now.
        Raises the GatewayError to refuse with."""
        self._out = []
        if self.spec.open == "connect":
            self._open("", None, ready=True)
        elif self.spec.open == "on_demand":
            # contexts start later, from their messages: only the credentials can be judged now
            self.key = self.auth.upstream_key(self.cred, scope=self.route.name)
        return self._out

    def start(self, t: float) -> list[Command]:
        """The upgrade is done."""
        self.since = t
        return self._run(self._start)

    def handle(self, ev: SessionEvent) -> list[Command]:
        if self.state is SessionState.CLOSED:
            return []
        return self._run(self._dispatch, ev)

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

    def _run(self, fn: Any, *args: Any) -> list[Command]:
        self._out = out = []
        try:
            fn(*args)
        except GatewayError as err:
            if self.spec.context_errors == "report" and self.handling is not None:
                self._context_error(self.handling, err)
            else:
                self._fail(err)
        return out

    def _dispatch(self, ev: SessionEvent) -> None:
        if isinstance(ev, GradiumEvents):
            self._emit(ev.req, ev.events)
        elif isinstance(ev, ClientMessage):
            self.handling = None
            if self.state is SessionState.OPENING:
                self._first(ev)
            else:
                self._message(inbound.decode(self.ws, ev.kind, ev.data), ev.t)
        elif isinstance(ev, RequestDone):
            self._done(ev)
        elif isinstance(ev, TimerFired):
            ev.req.timer = False
            if ev.req.accepting and ev.req.state is not ContextState.CLEARED:
                self._flush(ev.req)
        elif isinstance(ev, Failed):
            if ev.req is not None and self.spec.context_errors == "report":
                if ev.req.state is not ContextState.CLEARED:
                    self._context_error(ev.req.key, ev.err, failed=True)
            else:
                self._fail(ev.err)
        elif isinstance(ev, Tick):
            self._tick(ev.t)
        elif isinstance(ev, Shutdown):
            self.going_away = True
            self._close_gracefully()

    def _client(self, rendered: Any) -> None:
        if isinstance(rendered, Messages):  # one event rendered as several messages (`$messages`)
            for item in rendered:
                self._out.append(SendClient(orjson.dumps(item)))
        else:
            self._out.append(SendClient(orjson.dumps(rendered)))

    def _session_scope(self) -> dict[str, Any]:
        """Scope for socket-level templates (greeting, inbound fields, cleared): handshake params only."""
        if self._scope is None:
            try:
                params = self.route.read_params(RequestData(self.req.path, self.req.query, self.req.header))
            except GatewayError:
                params = {}
            self._scope = self.ctx.scope(params)
        scope = self._scope.copy()
        scope["sequence_id"] = self.sequence
        return scope

    def _idle_seconds(self) -> float | None:
        if self.ws.idle_seconds is None:
            return None
        value = self.ws.idle_seconds(self._session_scope())
        return float(value) if value else None

    # -- session lifecycle -----------------------------------------------------------------------

    def _start(self) -> None:
        if not self.table and self.spec.open == "first_message":
            return  # OPENING until the first message (it carries the params and maybe the key)
        if not self.table and self.spec.open == "connect":
            self._open("", None)
        self._begin()

    def _first(self, ev: ClientMessage) -> None:
        first = inbound.decode(self.ws, ev.kind, ev.data)
        self._open("", first if isinstance(first, dict) else None)
        self._begin()
        self._message(first, ev.t)

    def _begin(self) -> None:
        if self.spec.open == "on_demand" and self.key is None and self.cred is not None:
            # the handshake carried a credential (header, query token): judge it now, and let the
            # shared Gradium socket open before the first context needs it
            self.key = self.auth.upstream_key(self.cred, scope=self.route.name)
        self.state = SessionState.OPEN
        if self.spec.multiplex and self.key is not None:
            self._out.append(WarmUp())
        if self.ws.greeting is not None:
            self._client(self.ws.greeting(self._session_scope()))
        for r in self.table.requests():
            self._out.append(Read(r))
            if r.head:
                self._out.append(Turn(r))

    def _close(self, code: int, reason: bytes = b"") -> None:
        self.state = SessionState.CLOSED
        self._out.append(Close(code, reason))

    def _drained(self) -> None:
        """Nothing more is owed: close if the session was waiting for that."""
        if self.state is SessionState.DRAINING and not self.table:
            self._close(GOING_AWAY if self.going_away else 1000)

    def _fail(self, err: GatewayError) -> None:
        spec = self.ctx.mapping.errors.kinds[err.kind]
        self.status, self.error = err.kind, err
        tpl = self.ws.error_message or self.ctx.mapping.errors.ws_message
        if tpl is not None:
            self._client(tpl(self._error_scope(err)))
        self._close(spec.close, (spec.reason or "").encode()[:120])

    def _error_scope(self, err: GatewayError, key: str | None = None) -> dict[str, Any]:
        scope = error_scope(self.ctx, err)
        if key is not None:
            scope["context_id"] = key or None
        code = self.spec.error_codes.get(err.kind)
        if code is not None:
            scope["error"]["code"] = code
        return scope

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
        if "context" in fields:
            self.handling = key
        self._out.append(Acted(action, key or None))
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
            rendered = render_event(self.route, scope, rule.event or "", fields)
            if rendered is not None:
                self._client(rendered)
            return
        r = self.table.active(key)
        if action == "control":
            if r is not None:
                self._emit(r, r.plan.transform.on_action("control", fields))
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
                self._out.append(SendAudio(r, chunk))
            fields["audio"] = chunk
            if fields.get("flush"):  # audio and a flush in one message (ElevenLabs `commit: true`)
                self._emit(r, r.plan.transform.on_action(action, fields))
                self._flush(r)
                return
        elif action == "text":
            text = fields.get("text")
            if text is not None and not isinstance(text, str):
                raise GatewayError("invalid_message", "text must be a string")
            ready = r.words.push(text or "", bool(fields.get("trigger")))
            if ready:
                self._out.append(SendGradium(r, gradium.text(ready)))
            if fields.get("end"):
                # text and the end of this request's input in one message (Cartesia `continue: false`, or a
                # flush that the mapping turns into the end of a request); the transform hears it first
                self._emit(r, r.plan.transform.on_action(action, fields))
                self._end_of_input(r)
                return
            if fields.get("flush"):
                self._flush(r)
            elif text and r.plan.kind == "tts":
                self._buffer_delay(r, fields.get("flush_after_ms", self.spec.flush_after_ms))
        elif action == "flush":
            self._flush(r)
            return  # _flush tells the transform, with the flush id
        elif action == "end_of_stream":
            self._end_of_input(r)
        self._emit(r, r.plan.transform.on_action(action, fields))

    def _text_parts(self, r: Request, key: str, fields: dict[str, Any]) -> Request:
        """`text` fields `parts` (a list of {text, segment}) and `segment`: text that belongs to a segment (a
        dialogue line's voice). When the segment changes, the context's current request ends (its `end`
        event is not shown) and the next one starts under the same key, spoken after it; its params are
        read from the context's first message with `segment` set to the new value. Every part but the
        last is sent here; the last one goes on as the action's `text`."""
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
                self._emit(r, r.plan.transform.on_action("continue", {}))
            if segment is not None:
                r.segment = segment
            text = part.get("text")
            if text is not None and not isinstance(text, str):
                raise GatewayError("invalid_message", "text must be a string")
            if i == len(parts) - 1:
                fields["text"] = text
            elif text and (ready := r.words.push(text)):
                self._out.append(SendGradium(r, gradium.text(ready)))
        return r

    # -- requests --------------------------------------------------------------------------------

    def _open(self, key: str, message: dict[str, Any] | None, *, ready: bool = False) -> Request:
        limit = self.spec.max_contexts
        if limit is not None and key not in self.table.queues and len(self.table) >= limit:
            raise GatewayError("too_many_contexts",
                               f"Maximum simultaneous contexts per WebSocket connection exceeded ({limit})")
        req = RequestData(self.req.path, self.req.query, self.req.header, message=message)
        if self.key is None:
            if self.cred is None and message is not None:
                self.cred = find_credential(self.ctx.mapping.credentials, req)
            self.key = self.auth.upstream_key(self.cred, scope=self.route.name)
        params = self.route.read_params(req)
        plan = plan_session(self.ctx, params, self.table.shared_state(key))
        scope = self.ctx.scope(params)
        scope["context_id"] = key or None
        leg = None
        if plan.kind == "asr":
            from gateway.audio.leg import AudioLeg
            from gateway.audio.transcode import AudioError

            try:
                leg = AudioLeg(plan.info.audio_in, plan.info.gradium_in)  # type: ignore[arg-type]
            except AudioError as exc:
                raise GatewayError("unsupported_format", str(exc)) from None
        schedule = None
        if self.ws.text_schedule is not None:
            schedule = inbound.text_schedule(self.ws.text_schedule(scope))
        self.table.seq += 1
        r = Request(key, self.table.seq, plan, scope, WordBuffer(schedule), leg, message)
        self.table.add(r)
        self._out.append(Open(r, ready))
        if self.state is not SessionState.OPENING:
            self._out.append(Read(r))
            if r.head:
                self._out.append(Turn(r))
        return r

    def _flush(self, r: Request) -> None:
        if r.plan.kind == "tts":
            self._out.append(SendGradium(r, gradium.text_flush(r.words.drain())))
            return
        self._out.append(FlushAudio(r))
        r.flush_id += 1
        self._out.append(SendGradium(r, gradium.flush(r.flush_id)))
        self._emit(r, r.plan.transform.on_action("flush", {"flush_id": r.flush_id}))

    def _buffer_delay(self, r: Request, ms: Any) -> None:
        """`flush_after_ms` (Cartesia `max_buffer_delay_ms`): text that waited this long for more text is
        flushed to Gradium (its inline flush), so a pause in the client's input never holds audio back.
        0 flushes with every message; None leaves the buffering to Gradium."""
        if r.timer:
            r.timer = False
            self._out.append(CancelTimer(r))
        if not isinstance(ms, int | float) or isinstance(ms, bool) or ms < 0:
            return
        if ms == 0:
            self._flush(r)
            return
        r.timer = True
        self._out.append(StartTimer(r, min(float(ms), MAX_FLUSH_DELAY_MS) / 1000))

    def _end_of_input(self, r: Request) -> None:
        if r.plan.kind == "tts":
            rest = r.words.drain()
            if rest:
                self._out.append(SendGradium(r, gradium.text(rest)))
        else:
            self._out.append(FlushAudio(r))
        self._out.append(SendGradium(r, gradium.end_of_stream()))
        if r.timer:
            r.timer = False
            self._out.append(CancelTimer(r))
        self.table.end_input(r)
        r.scope["sequence_id"] = self.sequence  # e.g. Deepgram's Flushed counts flushes from 0
        self.sequence += 1
        if self.spec.on_end == "close":
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
        for r in self.table.drop(key, remember=self.spec.reject_cleared):
            self._out.append(Drop(r))
        self._out.append(ContextOver(key or None, "cleared"))
        scope = self._session_scope()
        scope["context_id"] = key or None
        rendered = render_event(self.route, scope, "cleared", {})
        if rendered is not None:
            self._client(rendered)

    def _context_error(self, key: str, err: GatewayError, *, failed: bool = False) -> None:
        """`context_errors: report`: the error message carries the context id; only that context ends."""
        for r in self.table.drop(key, remember=False):
            self._out.append(Drop(r, failed=failed))
        self._out.append(ContextOver(key or None, "error"))
        tpl = self.ws.error_message or self.ctx.mapping.errors.ws_message
        if tpl is not None:
            self._client(tpl(self._error_scope(err, key)))
        self._drained()

    # -- Gradium -> client -----------------------------------------------------------------------

    def _emit(self, r: Request, events: list[Event]) -> None:
        for name, fields in events:
            if name == SEND_GRADIUM:
                if r.accepting:
                    self._out.append(SendGradium(r, fields))
                continue
            if name == "end" and r.continued:
                continue  # the context's next request (another `segment`) ends it
            scope = r.scope.copy()
            scope.setdefault("sequence_id", self.sequence)
            rendered = render_event(self.route, scope, name, fields)
            if rendered is not None:
                self._client(rendered)
            elif isinstance(audio := fields.get("audio"), bytes) and audio:
                self._out.append(SendClient(audio, binary=True))

    def _done(self, ev: RequestDone) -> None:
        r = ev.req
        if r.state is ContextState.CLEARED:
            return
        if ev.upstream_request_id is not None:
            self.upstream_request_id = ev.upstream_request_id
        nxt = self.table.finish(r)
        self._out.append(Drop(r))
        if nxt is not None:
            self._out.append(Turn(nxt))
        if r.key not in self.table.queues:
            self._out.append(ContextOver(r.key or None, "done", ev.upstream_request_id))
        if not self.table.owed():
            self.since = ev.t  # the client's silence counts from here
        if self.spec.on_end == "close":
            self._close(1000)
            return
        self._drained()
