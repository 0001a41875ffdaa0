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

from typing import Any

from gateway.errors import GatewayError
from gateway.session import commands as cmd
from gateway.session import inbound
from gateway.session.contexts import ContextState, Request
from gateway.session.port import BINARY
from gateway.session.requests import GOING_AWAY, Requests, SessionState
from gateway.upstream import protocol as gradium

__all__ = ["DRAIN_TIMEOUT_S", "FIRST_MESSAGE_TIMEOUT_S", "GOING_AWAY", "SessionCore", "SessionState"]

FIRST_MESSAGE_TIMEOUT_S = 20.0
DRAIN_TIMEOUT_S = 120.0  # a request whose input ended must finish within this (Gradium stuck)
MAX_CONTEXT_ID = 256
# Enum members read once: on Python 3.11 `EnumType` has a `__getattr__`, so every `SessionState.OPEN` is a
# slow attribute lookup (~650 instructions), and the per-frame paths read these on every client frame
_OPEN = SessionState.OPEN
_CLOSED = SessionState.CLOSED
_OPENING = SessionState.OPENING
_BYTES = (bytes, bytearray)  # a tuple, not `bytes | bytearray`: that makes a union object at every call
_SendAudio = cmd.SendAudio
_CONTEXT_OPEN = ContextState.OPEN


class SessionCore(Requests):
    """The session's entry points, its lifecycle and the client's messages (the requests they act on,
    and the rendering of what Gradium sends, are in `Requests`)."""

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

    def warm(self) -> list[cmd.Command]:
        """Before the upgrade: on a socket whose contexts open on demand on one shared Gradium socket, a
        caller judged at the handshake (`preauth`) has that socket's handshake start now, so it overlaps
        the 101 and the client's first message instead of following them into its first audio."""
        if self.spec.contexts.multiplex and self.spec.open == "on_demand" and isinstance(self.preauth, str):
            self.key = self.preauth
            return [cmd.WarmUp()]
        return []

    def start(self, t: float) -> list[cmd.Command]:
        """The upgrade is done."""
        self.since = t
        self.idle_s = self.render.idle_seconds(self.req)
        return self._run(self._start)

    def handle(self, ev: cmd.SessionEvent) -> list[cmd.Command]:
        if self.state is SessionState.CLOSED:
            return []
        return self._run(self._dispatch, ev)

    def client(self, kind: str, data: str | bytes, t: float) -> list[cmd.Command]:
        """A client frame: what `handle(ClientMessage(kind, data, t))` does, with no event object and no
        dispatch (the hot path for client audio). `handling` names its context only while it is handled."""
        if self.state is _CLOSED:
            return []
        self._out = out = []
        try:
            audio = self._binary_is_audio  # known after the first binary frame: no call per frame
            if kind is BINARY and self.state is _OPEN and (audio or (audio is None and self._binary_audio())):
                # what `_message` does with a binary frame on such a route, inline: once per audio chunk
                self.handling = None
                self.since = t
                if self.report_actions:
                    out.append(cmd.Acted("audio", None))
                if self.accepting:
                    q = self.table.queues.get("")  # `table.active("")`
                    r = q[-1] if q else None
                    if r is None or r.state is not _CONTEXT_OPEN:
                        r = self._open_new("", None)
                    if r.leg is None:  # before decoding: a socket without audio says so, not "bad base64"
                        raise GatewayError("invalid_message", "This socket does not take audio")
                    if data.__class__ is not bytes:
                        data = inbound.audio_bytes(data)
                    if data:
                        out.append(_SendAudio(r, data))
                    events = r.plan.transform.on_audio(data)  # type: ignore[arg-type]
                    if events:
                        self._events(r, events)
            else:
                self._client(kind, data, t)
        except GatewayError as err:
            self._error(err)
        self.handling = None
        return out

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
            self._error(err)
        return out

    def _dispatch(self, ev: cmd.SessionEvent) -> None:
        if isinstance(ev, cmd.GradiumEvents):
            self._events(ev.req, ev.events)
        elif isinstance(ev, cmd.ClientMessage):
            self._client(ev.kind, ev.data, ev.t)
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

    # -- session lifecycle -----------------------------------------------------------------------

    def _start(self) -> None:
        if not self.table and self.spec.open == "first_message":
            return  # OPENING until the first message (it carries the params and maybe the key)
        if not self.table and self.spec.open == "connect":
            self._open("", None)
        self._begin()

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

    def _binary_audio(self) -> bool:
        """Binary frames are plain audio on this route (`{when: binary, do: audio}`, no fields): a
        binary frame matches the same rule whatever its bytes (matchers look at its type only)."""
        if self._binary_is_audio is None:
            rule = inbound.match(self.ws, b"")
            self._binary_is_audio = rule is not None and rule.action == "audio" and rule.fields is None
        return self._binary_is_audio

    def _open_new(self, key: str, first: dict[str, Any] | None) -> Request:
        """A request for a message naming no open context; refused if the client cancelled that context."""
        if key in self.table.cleared:
            raise GatewayError("invalid_message", f"Context {key} was cancelled; start a new context_id")
        return self._open(key, first)

    def _take_audio(self, r: Request, raw: Any) -> bytes:
        """`raw` (a binary frame's bytes, or a JSON field's base64) sent on to `r`'s audio leg; its bytes."""
        if r.leg is None:  # before decoding: a socket without audio says so, not "bad base64"
            raise GatewayError("invalid_message", "This socket does not take audio")
        chunk = raw if raw.__class__ is bytes else inbound.audio_bytes(raw)  # a binary frame is its bytes
        if chunk:
            self._out.append(cmd.SendAudio(r, chunk))
        return chunk

    def _client(self, kind: str, data: str | bytes, t: float) -> None:
        self.handling = None
        msg = inbound.decode(self.ws, kind, data)
        if self.state is _OPENING:
            self._open("", msg if isinstance(msg, dict) else None)
            self._begin()
        self._message(msg, t)

    def _message(self, data: Any, t: float) -> None:
        rule = inbound.match(self.ws, data)
        if rule is None or rule.action == "ignore":
            return
        action = rule.action
        self.since = t
        fields: dict[str, Any] = {}
        if rule.fields is not None:
            if rule.message_only:
                fields = rule.fields({"message": data}) or {}
            else:
                scope = self._session_scope()
                scope["message"] = data
                fields = rule.fields(scope) or {}
        key = "" if fields.get("context") is None else str(fields["context"])
        if len(key) > MAX_CONTEXT_ID:
            # refused before it becomes `handling`: a context id is echoed on every message (amplification)
            raise GatewayError("invalid_message", f"context_id is longer than {MAX_CONTEXT_ID} characters")
        if "context" in fields:
            self.handling = key
        if self.report_actions:
            self._out.append(cmd.Acted(action, key or None))
        if action == "audio":  # first: a JSON audio chunk (ElevenLabs realtime STT) comes every 80 ms
            if not self.accepting:
                return
            r = self.table.active(key)
            if r is None:
                r = self._open_new(key, data if isinstance(data, dict) else None)
            fields["audio"] = self._take_audio(r, data if isinstance(data, _BYTES) else fields.get("audio"))
            if fields.get("flush"):  # audio and a flush in one message (ElevenLabs `commit: true`)
                self._events(r, r.plan.transform.on_action(action, fields))
                self._flush(r)
                return
            self._events(r, r.plan.transform.on_action(action, fields))
            return
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
            r = self._open_new(key, data if isinstance(data, dict) else None)
        if action == "text" and ("parts" in fields or fields.get("segment") is not None):
            r = self._text_parts(r, key, fields)
        if action == "text":
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

    # -- ending ----------------------------------------------------------------------------------

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
