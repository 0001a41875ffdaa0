"""What the client sees: a request's events, errors and socket-level messages rendered by the route's
templates into `SendClient` commands (pure)."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.dialects.common import RequestContext, error_scope, render_event
from gateway.errors import GatewayError
from gateway.mapping.params import RequestData
from gateway.mapping.template import Messages
from gateway.mapping.transforms import SEND_GRADIUM, Event
from gateway.session.commands import Command, SendClient, SendGradium
from gateway.session.contexts import Request


class Renderer:
    def __init__(self, ctx: RequestContext) -> None:
        assert ctx.route.ws is not None
        self.ctx = ctx
        self.route = ctx.route
        self.ws = ctx.route.ws
        self.templates = ctx.route.render  # event name -> template
        self.local = ctx.route.local_render  # templates that read only their event's fields
        self._scope: dict[str, Any] | None = None
        self._params: dict[str, Any] | GatewayError | None = None

    def handshake_params(self, req: RequestData) -> dict[str, Any]:
        """The route's params from the handshake alone (path, query, headers; no message): read once per
        session, for the session scope and for a request the handshake opens (a copy each)."""
        if self._params is None:
            try:
                self._params = self.route.read_params(RequestData(req.path, req.query, req.header))
            except GatewayError as err:
                self._params = err
        if isinstance(self._params, GatewayError):
            raise self._params
        return self._params.copy()

    def session_scope(self, req: RequestData, sequence: int) -> dict[str, Any]:
        """Scope for socket-level templates (greeting, inbound fields, cleared): handshake params only."""
        if self._scope is None:
            try:
                params = self.handshake_params(req)
            except GatewayError:
                params = {}
            self._scope = self.ctx.scope(params)
        scope = self._scope.copy()
        scope["sequence_id"] = sequence
        return scope

    def idle_seconds(self, req: RequestData) -> float | None:
        if self.ws.idle_seconds is None:
            return None
        value = self.ws.idle_seconds(self.session_scope(req, 0))
        return float(value) if value else None

    def client(self, rendered: Any, out: list[Command]) -> None:
        if isinstance(rendered, Messages):  # one event rendered as several messages (`$messages`)
            for item in rendered:
                out.append(SendClient(orjson.dumps(item)))
        elif rendered is not None:
            out.append(SendClient(orjson.dumps(rendered)))

    def event(self, scope: dict[str, Any], name: str, fields: dict[str, Any], out: list[Command]) -> None:
        self.client(render_event(self.route, scope, name, fields), out)

    def events(self, r: Request, events: list[Event], sequence: int, out: list[Command]) -> None:
        """A request's transform events: to the client, or (`SEND_GRADIUM`) to Gradium while its input is open.

        Called for every Gradium message with events: the scope is copied once (what `render_event`
        does, without its second copy) and a plain message becomes one `SendClient`."""
        templates = self.templates
        for name, fields in events:
            if name == SEND_GRADIUM:
                if r.accepting:
                    out.append(SendGradium(r, fields))
                continue
            if name == "end" and r.continued:
                continue  # the context's next request (another `segment`) ends it
            tpl = templates.get(name)
            if tpl is not None:
                if name in self.local:
                    rendered = tpl(fields)  # templates only read: the event's dict is the whole scope
                else:
                    scope = r.scope.copy()
                    if "sequence_id" not in scope:
                        scope["sequence_id"] = sequence
                    scope.update(fields)
                    rendered = tpl(scope)
                if rendered is not None:
                    if isinstance(rendered, Messages):  # one event rendered as several messages (`$messages`)
                        self.client(rendered, out)
                    else:
                        out.append(SendClient(orjson.dumps(rendered)))
                    continue
            if isinstance(audio := fields.get("audio"), bytes) and audio:
                out.append(SendClient(audio, binary=True))

    def error(self, err: GatewayError, key: str | None, out: list[Command]) -> None:
        """The route's error message (with the context id when one context failed), if it has one."""
        tpl = self.ws.error_message or self.ctx.mapping.errors.ws_message
        if tpl is None:
            return
        scope = error_scope(self.ctx, err)
        if key is not None:
            scope["context_id"] = key or None
        code = self.ws.spec.errors.codes.get(err.kind)
        if code is not None:
            scope["error"]["code"] = code
        self.client(tpl(scope), out)
