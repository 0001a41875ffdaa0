"""Playbooks for the session core: alternating events in and the commands expected out, no sockets.

    pb = Playbook("deepgram", "listen_live", query={"encoding": "linear16"})
    pb.start() << ["Open ''#1", "Read ''#1", "Turn ''#1"]
    pb.client({"type": "Finalize"}) << ["Acted flush ''", "FlushAudio ''#1", "Gradium ''#1 flush {'flush_id': 1}"]

Each command is written as one short line (`describe`); on a mismatch the assertion shows a diff of the
expected and actual lines, with the event that produced them.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import orjson
from multidict import CIMultiDict, MultiDict

from gateway.app import create_app
from gateway.auth import find_credential
from gateway.config import Settings
from gateway.dialects.common import AUTH, MAPPINGS, RequestContext
from gateway.mapping.params import RequestData
from gateway.session import commands as cmd
from gateway.session.contexts import Request
from gateway.session.core import SessionCore
from gateway.session.port import BINARY, TEXT

_APP = None


def _app() -> Any:
    global _APP
    if _APP is None:
        _APP = create_app(Settings())
    return _APP


def name(r: Request) -> str:
    return f"{r.key!r}#{r.seq}"


def _short(value: Any) -> str:
    text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    return text if len(text) <= 400 else text[:397] + "..."


SKIPPED = frozenset({"type", "message_type", "request_id", "created", "session_id", "step_time"})


def _client(data: bytes) -> str:
    """A client message as its type and its top-level scalar fields (long strings as their length;
    ids and clocks that change per run left out)."""
    msg = orjson.loads(data)
    if not isinstance(msg, dict):
        return f"Client {_short(msg)}"
    kind = msg.get("type") or msg.get("message_type") or ""
    fields = {}
    for k, v in sorted(msg.items()):
        if k in SKIPPED or isinstance(v, dict | list):
            continue
        fields[k] = f"<{len(v)} chars>" if isinstance(v, str) and len(v) > 100 else v
    return f"Client {kind} {_short(fields)}".replace("  ", " ")


def describe(c: cmd.Command) -> str:
    if isinstance(c, cmd.SendClient):
        return f"Client <{len(c.data)} bytes>" if c.binary else _client(c.data)
    if isinstance(c, cmd.SendGradium):
        rest = {k: v for k, v in c.msg.items() if k != "type"}
        return f"Gradium {name(c.req)} {c.msg['type']} {_short(rest)}"
    if isinstance(c, cmd.SendAudio):
        return f"Audio {name(c.req)} <{len(c.chunk)} bytes>"
    if isinstance(c, cmd.Open | cmd.Read | cmd.Turn | cmd.FlushAudio | cmd.CancelTimer | cmd.TimerFired):
        extra = " ready" if isinstance(c, cmd.Open) and c.ready else ""
        return f"{type(c).__name__} {name(c.req)}{extra}"
    if isinstance(c, cmd.Drop):
        return f"Drop {name(c.req)}" + (" failed" if c.failed else "")
    if isinstance(c, cmd.StartTimer):
        return f"StartTimer {name(c.req)} {c.seconds:g}s"
    if isinstance(c, cmd.Close):
        return f"Close {c.code}" + (f" {c.reason.decode()}" if c.reason else "")
    if isinstance(c, cmd.Acted):
        return f"Acted {c.action} {c.context!r}"
    if isinstance(c, cmd.ContextOver):
        return f"ContextOver {c.context!r} {c.reason}"
    return type(c).__name__


class Step:
    def __init__(self, pb: Playbook, event: str, out: list[cmd.Command]) -> None:
        self.pb, self.event, self.out = pb, event, out

    def __lshift__(self, expected: Sequence[str]) -> Playbook:
        actual = [describe(c) for c in self.out if not self.pb.hide(c)]
        if actual != list(expected):
            diff = "\n".join(difflib.unified_diff(list(expected), actual, "expected", "actual", lineterm=""))
            raise AssertionError(f"after >> {self.event}\n{diff}")
        return self.pb


class Playbook:
    """One session core for a route, driven by hand. `hide` drops command kinds a test does not check."""

    def __init__(self, provider: str, route: str, *, path: dict[str, str] | None = None,
                 query: dict[str, str] | None = None, header: dict[str, str] | None = None,
                 hide: Sequence[type] = (cmd.Acted,)) -> None:
        app = _app()
        mapping = app[MAPPINGS][provider]
        self.ctx = RequestContext(mapping, mapping.routes[route])
        req = RequestData(path=path or {}, query=MultiDict(query or {}), header=CIMultiDict(header or {}))
        self.ctx.req = req
        self.core = SessionCore(self.ctx, req, app[AUTH], find_credential(mapping.credentials, req), 0.0)
        self.hidden = tuple(hide)
        self.t = 0.0

    def hide(self, c: cmd.Command) -> bool:
        return isinstance(c, self.hidden)

    def req(self, key: str = "", seq: int | None = None) -> Request:
        """A request of the session, by context id (and creation number), for Gradium events."""
        for r in self.core.table.requests():
            if r.key == key and (seq is None or r.seq == seq):
                return r
        raise KeyError(f"no live request {key!r}#{seq}")

    def _step(self, label: str, out: list[cmd.Command]) -> Step:
        return Step(self, label, out)

    def start(self) -> Step:
        return self._step("start", self.core.start(self.t))

    def warm(self) -> Step:
        return self._step("warm", self.core.warm())

    def prepare(self) -> Step:
        return self._step("prepare", self.core.prepare())

    def client(self, message: Any, *, at: float | None = None) -> Step:
        if at is not None:
            self.t = at
        if isinstance(message, bytes):
            ev = cmd.ClientMessage(BINARY, message, self.t)
        else:
            ev = cmd.ClientMessage(TEXT, message if isinstance(message, str) else orjson.dumps(message).decode(),
                                   self.t)
        return self._step(f"client {message!r}"[:120], self.core.handle(ev))

    def gradium(self, r: Request, msg: dict[str, Any]) -> Step:
        """A Gradium message for request `r`, through its transform (as the driver's reader does)."""
        events = r.plan.transform.on_gradium(msg)
        return self._step(f"gradium {name(r)} {msg.get('type')}", self.core.handle(cmd.GradiumEvents(r, events)))

    def done(self, r: Request, *, at: float | None = None) -> Step:
        if at is not None:
            self.t = at
        return self._step(f"done {name(r)}", self.core.handle(cmd.RequestDone(r, self.t, "req_1")))

    def timer(self, r: Request) -> Step:
        return self._step(f"timer {name(r)}", self.core.handle(cmd.TimerFired(r)))

    def tick(self, t: float) -> Step:
        self.t = t
        return self._step(f"tick {t:g}", self.core.handle(cmd.Tick(t)))

    def event(self, ev: cmd.SessionEvent) -> Step:
        return self._step(type(ev).__name__, self.core.handle(ev))
