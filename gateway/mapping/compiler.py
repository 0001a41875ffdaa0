"""Compile a validated mapping into plain callables, once, at start-up.

The hot path only calls what this produces: param readers, template renderers, inbound matchers.
Cross-references (tables, transforms, functions, template names) are checked here and reported
with the file and line they come from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.audio.formats import AudioFormat
from gateway.errors import GatewayError
from gateway.mapping.actions import check_args
from gateway.mapping.emits import route_events
from gateway.mapping.params import CompiledTable, ParamReader, RequestData, compile_param
from gateway.mapping.schema import CredentialSource, ErrorKindSpec, LegacySpec, Mapping, Route
from gateway.mapping.template import Render, TemplateError, compile_template, references
from gateway.mapping.transforms import TRANSFORMS, EventTransform
from gateway.mapping.websocket import InboundRule, WsSpec

# Names every template may use besides the route's params.
BUILTIN_NAMES = frozenset(
    {"request_id", "error", "char_count", "created", "message", "item", "provider", "context_id", "sequence_id"}
)


class CompileError(ValueError):
    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


Matcher = Callable[[Any], bool]


@dataclass(slots=True)
class CompiledInbound:
    match: Matcher
    action: str
    fields: Render | None
    error: str | None
    message: str | None
    event: str | None = None  # do: reply
    # its fields read the message only: rendered on {"message": ...}, not on a copy of the session's scope
    # (ElevenLabs realtime STT: every audio chunk)
    message_only: bool = False


@dataclass(slots=True)
class CompiledWs:
    spec: WsSpec
    inbound: list[CompiledInbound]
    idle_seconds: Render | None
    greeting: Render | None
    text_schedule: Render | None = None
    error_message: Render | None = None
    plain_text: bool = False  # some rule matches bare text commands: non-JSON text frames are strings


@dataclass(slots=True)
class CompiledRoute:
    name: str
    provider: str
    method: str
    path: str
    is_ws: bool
    spec: Route
    params: dict[str, ParamReader]
    message_params: dict[str, ParamReader] = field(default_factory=dict)  # the params a message can set
    setup: Render | None = None
    text: Render | None = None
    segments: Render | None = None
    audio_out: Render | None = None
    audio_in: Render | None = None
    transform: type[EventTransform] | None = None
    transform_options: Render | None = None
    render: dict[str, Render] = field(default_factory=dict)
    # events whose template reads only the event's own fields (no param, no built-in name): rendered
    # from the fields alone, without a copy of the request's scope per event (per audio chunk)
    local_render: frozenset[str] = frozenset()
    headers: Render | None = None
    static: Render | None = None
    ws: CompiledWs | None = None

    def read_params(self, req: RequestData) -> dict[str, Any]:
        return {name: read(req) for name, read in self.params.items()}


@dataclass(slots=True)
class CompiledErrors:
    kinds: dict[str, ErrorKindSpec]
    http_body: Render
    http_headers: Render
    ws_message: Render | None
    refuse_upgrade: bool
    refuse_header: str | None
    params: dict[str, ParamReader] = field(default_factory=dict)  # `errors.params`


@dataclass(slots=True)
class CompiledMapping:
    provider: str
    credentials: list[CredentialSource]
    tables: dict[str, CompiledTable]
    errors: CompiledErrors
    routes: dict[str, CompiledRoute]
    request_id_header: str | None
    legacy: LegacySpec | None = None


def _match_condition(path: tuple[str, ...], cond: Any) -> Matcher:
    def get(msg: Any) -> Any:
        v = msg
        for p in path:
            if not isinstance(v, dict) or p not in v:
                return _ABSENT
            v = v[p]
        return v

    if isinstance(cond, dict) and set(cond) == {"present"}:
        want = bool(cond["present"])
        return lambda m: (get(m) is not _ABSENT) == want
    if isinstance(cond, dict) and set(cond) == {"type"}:
        pytypes = {"string": str, "number": (int, float), "boolean": bool, "object": dict, "array": list}
        t = pytypes[cond["type"]]
        # JSON true is not a number here, although Python's bool is an int
        return lambda m: isinstance(v := get(m), t) and (t is bool or not isinstance(v, bool))
    if isinstance(cond, dict) and set(cond) == {"in"}:
        options = list(cond["in"])
        return lambda m: get(m) in options
    return lambda m: (v := get(m)) is not _ABSENT and v == cond and type(v) is type(cond)


_ABSENT = object()


_BYTES = (bytes, bytearray)  # a tuple, not `bytes | bytearray`: that makes a union object at every call


def _compile_when(when: Any) -> Matcher:
    if when == "binary":
        return lambda m: isinstance(m, _BYTES)
    if when == "any":
        return lambda m: True
    if isinstance(when, list):  # bare (non-JSON) text commands, decoded as str by the runtime
        commands = frozenset(when)
        return lambda m: isinstance(m, str) and m in commands
    if len(when) == 1:
        ((name, want),) = when.items()
        if "." not in name and not isinstance(want, dict):
            # the usual `{type: X}` rule, tried on every client message: `_match_condition`'s test in one
            # call (no `get` per test, no generator)
            kind = type(want)
            return lambda m: isinstance(m, dict) and (v := m.get(name, _ABSENT)) is not _ABSENT and v == want \
                and type(v) is kind
    conds = [_match_condition(tuple(k.split(".")), v) for k, v in when.items()]
    if len(conds) == 1:
        cond = conds[0]
        return lambda m: isinstance(m, dict) and cond(m)
    return lambda m: isinstance(m, dict) and all(c(m) for c in conds)


def _where(tpl: Any, names: set[str], loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """The deepest part of a template that names one of `names` (so the error points at its line)."""
    parts = tpl.items() if isinstance(tpl, dict) else enumerate(tpl) if isinstance(tpl, list) else ()
    for k, v in parts:
        if references(v) & names:
            return _where(v, names, (*loc, k))
    return loc


def _check_names(tpl: Any, known: frozenset[str] | set[str], loc: tuple[str | int, ...], hint: str = "") -> Render:
    unknown = references(tpl) - set(known)
    if unknown:
        raise CompileError(_where(tpl, unknown, loc),
                           f"unknown name(s) {', '.join('$' + n for n in sorted(unknown))}{hint}")
    try:
        return compile_template(tpl)
    except TemplateError as exc:
        raise CompileError(loc, str(exc)) from None


def compile_mapping(
    mapping: Mapping,
    tables: dict[str, CompiledTable],
) -> CompiledMapping:
    errors = mapping.errors
    for pname, p in errors.params.items():
        if p.table is not None and p.table not in tables:
            raise CompileError(("errors", "params", pname, "table"), f"unknown table {p.table!r}")
    err_names = BUILTIN_NAMES | set(errors.params)
    compiled_errors = CompiledErrors(
        kinds=errors.kinds,
        http_body=_check_names(errors.http_body, err_names, ("errors", "http_body")),
        http_headers=_check_names(errors.http_headers, err_names, ("errors", "http_headers")),
        ws_message=_check_names(errors.ws_message, err_names, ("errors", "ws_message"))
        if errors.ws_message is not None
        else None,
        refuse_upgrade=errors.ws_refuse_upgrade,
        refuse_header=errors.ws_refuse_header,
        params={pname: compile_param(pname, p, tables) for pname, p in errors.params.items()},
    )
    error_params = frozenset(errors.params)
    routes = {
        name: _compile_route(mapping.provider, name, route, tables, error_params)
        for name, route in mapping.routes.items()
    }
    return CompiledMapping(
        provider=mapping.provider,
        credentials=mapping.credentials,
        tables=tables,
        errors=compiled_errors,
        routes=routes,
        request_id_header=mapping.request_id_header,
        legacy=mapping.legacy,
    )


def _compile_route(
    provider: str, name: str, route: Route, tables: dict[str, CompiledTable], error_params: frozenset[str]
) -> CompiledRoute:
    loc: tuple[str | int, ...] = ("routes", name)
    for pname, p in route.params.items():
        if p.table is not None and p.table not in tables:
            raise CompileError((*loc, "params", pname, "table"), f"unknown table {p.table!r}")
    params = {pname: compile_param(pname, p, tables) for pname, p in route.params.items()}
    known = set(route.params) | BUILTIN_NAMES
    if route.http is not None:
        method, path = route.http.split(" ", 1)
        is_ws = False
    else:
        method, path = "GET", route.ws or "/"
        is_ws = True
    out = CompiledRoute(name=name, provider=provider, method=method, path=path, is_ws=is_ws, spec=route,
                        params=params)
    out.message_params = {pname: params[pname] for pname, p in route.params.items()
                          if any(src.split(".")[0] == "message" for src in p.sources)}
    out.headers = _check_names(route.response.headers, known | {"char_count"}, (*loc, "response", "headers"))
    if route.static is not None:
        out.static = _check_names(route.static, known, (*loc, "static"))
    if route.gradium is not None:
        g = route.gradium
        gloc = (*loc, "gradium")
        out.setup = _check_names(g.setup, known, (*gloc, "setup"))
        if g.text is not None:
            out.text = _check_names(g.text, known, (*gloc, "text"))
        if g.segments is not None:
            out.segments = _check_names(g.segments, known, (*gloc, "segments"))
        if g.kind == "tts" and g.audio_out is None:
            raise CompileError(gloc, "a tts route needs `audio_out` (the client's audio format)")
        if g.audio_out is not None:
            out.audio_out = _check_names(g.audio_out, known, (*gloc, "audio_out"))
        if g.audio_in is not None:
            out.audio_in = _check_names(g.audio_in, known, (*gloc, "audio_in"))
    if route.transform is not None:
        tloc = (*loc, "transform")
        cls = TRANSFORMS.get(route.transform.name)
        if cls is None:
            raise CompileError(
                (*tloc, "name"),
                f"unknown transform {route.transform.name!r} (known: {', '.join(sorted(TRANSFORMS))})",
            )
        allowed = set(cls.Options.model_fields)
        extra = set(route.transform.options) - allowed
        if extra:
            raise CompileError((*tloc, "options"), f"unknown option(s) {sorted(extra)}; allowed: {sorted(allowed)}")
        out.transform = cls
        out.transform_options = _check_names(route.transform.options, known, (*tloc, "options"))
    out.render, out.local_render = _compile_render(route, out.transform, known, error_params, loc)
    if route.websocket is not None:
        wloc = (*loc, "websocket")
        inbound = []
        for i, rule in enumerate(route.websocket.inbound):
            inbound.append(_compile_rule(rule, known | {"message"}, (*wloc, "inbound", i)))
            if rule.event is not None and rule.event not in route.render:
                raise CompileError((*wloc, "inbound", i, "event"), f"no render template named {rule.event!r}")
        idle = None
        if route.websocket.idle is not None:
            idle = _check_names(route.websocket.idle.seconds, known, (*wloc, "idle", "seconds"))
        greeting = None
        if route.websocket.greeting is not None:
            greeting = _check_names(route.websocket.greeting, known, (*wloc, "greeting"))
        out.ws = CompiledWs(spec=route.websocket, inbound=inbound, idle_seconds=idle, greeting=greeting)
        # non-JSON text is a string message when rules match bare text, or when unknown messages are
        # ignored (Deepgram: "unknown text is ignored"), so it meets those rules instead of a 1008
        rules = route.websocket.inbound
        out.ws.plain_text = any(isinstance(rule.when, list) for rule in rules) or \
            any(rule.when == "any" and rule.do == "ignore" for rule in rules)
        if route.websocket.text.schedule is not None:
            out.ws.text_schedule = _check_names(route.websocket.text.schedule, known,
                                                (*wloc, "text", "schedule"))
        if route.websocket.errors.message is not None:
            out.ws.error_message = _check_names(route.websocket.errors.message, BUILTIN_NAMES,
                                                (*wloc, "errors", "message"))
    return out


def _compile_render(route: Route, transform: type[EventTransform] | None, known: set[str],
                    error_params: frozenset[str], loc: tuple[str | int, ...]
                    ) -> tuple[dict[str, Render], frozenset[str]]:
    """Each `render` key must be an event the route can emit, and its template may name that event's
    fields (besides the params and the names every template has)."""
    events, who = route_events(route, transform, error_params)
    out = {}
    local = set()
    for ev, tpl in route.render.items():
        fields = events.get(ev)
        if fields is None:
            raise CompileError((*loc, "render", ev),
                               f"no event {ev!r} here: {who} emit(s) {', '.join(sorted(events)) or 'none'}")
        hint = f" (event {ev!r} has {', '.join(sorted(fields)) or 'no fields'}; or a param)"
        out[ev] = _check_names(tpl, known | fields, (*loc, "render", ev), hint)
        refs = references(tpl)
        if refs <= fields and not refs & (known | BUILTIN_NAMES):
            local.add(ev)
    return out, frozenset(local)


def _compile_rule(rule: InboundRule, known: set[str], loc: tuple[str | int, ...]) -> CompiledInbound:
    try:
        match = _compile_when(rule.when)
    except (KeyError, TypeError) as exc:
        raise CompileError((*loc, "when"), f"bad condition: {exc}") from None
    for key, problem in check_args(rule.do, rule.fields):
        raise CompileError((*loc, "fields", key) if key in rule.fields else (*loc, "do"), problem)
    fields = _check_names(rule.fields, known, (*loc, "fields")) if rule.fields else None
    return CompiledInbound(match=match, action=rule.do, fields=fields, error=rule.error, message=rule.message,
                           event=rule.event, message_only=bool(rule.fields) and references(rule.fields) <= {"message"})


def audio_format(value: Any, what: str) -> AudioFormat:
    """A rendered `audio_out`/`audio_in` template (dict) -> AudioFormat, or an unsupported_format error."""
    if isinstance(value, AudioFormat):
        return value
    if not isinstance(value, dict):
        raise GatewayError("unsupported_format", f"{what}: unsupported audio format")
    try:
        return AudioFormat(
            encoding=value["encoding"],
            container=value.get("container", "raw"),
            sample_rate=int(value.get("sample_rate", 24000)),
            channels=int(value.get("channels", 1)),
            bit_rate=int(value["bit_rate"]) if value.get("bit_rate") else None,
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise GatewayError("unsupported_format", f"{what}: {exc}") from None
