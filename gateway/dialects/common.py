"""What every transport shares: app state, request context, errors in the provider's shape, and
turning a route's params into a Gradium session plan (setup, audio formats, transform)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel

from gateway.audio.formats import (
    GRADIUM_INPUT_FORMATS,
    GRADIUM_OUTPUT_FORMATS,
    nearest_gradium_input,
    nearest_gradium_output,
)
from gateway.audio.leg import offload
from gateway.audio.transcode import AudioError
from gateway.auth import Authenticator
from gateway.config import Settings
from gateway.errors import GatewayError
from gateway.events import Degraded, new_request_id
from gateway.mapping.compiler import CompiledMapping, CompiledRoute, audio_format
from gateway.mapping.params import RequestData
from gateway.mapping.transforms import Event, EventTransform, SessionInfo
from gateway.observability import Metrics
from gateway.tokens import TokenIssuer
from gateway.upstream import protocol as gradium
from gateway.upstream.gradium import GradiumClient

SETTINGS = web.AppKey("settings", Settings)
MAPPINGS = web.AppKey("mappings", dict)
GRADIUM = web.AppKey("gradium", GradiumClient)
TOKENS = web.AppKey("tokens", TokenIssuer)
AUTH = web.AppKey("auth", Authenticator)
METRICS = web.AppKey("metrics", Metrics)
T = TypeVar("T")
R = TypeVar("R")


@dataclass(slots=True)
class RequestContext:
    mapping: CompiledMapping
    route: CompiledRoute
    request_id: str = field(default_factory=new_request_id)
    started: float = field(default_factory=time.monotonic)
    wall: float = field(default_factory=time.time)  # `created`, formatted only for the answers that show it
    req: RequestData | None = None  # path/query/headers, for the mapping's `errors.params`
    degraded: tuple[Degraded, ...] = ()  # what the answer lacks (the session end reports it)

    @property
    def created(self) -> str:
        return datetime.fromtimestamp(self.wall, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def scope(self, params: dict[str, Any] | None = None) -> dict[str, Any]:
        base = {"request_id": self.request_id, "created": self.created, "provider": self.mapping.provider}
        if params:
            base.update(params)
        return base

    def elapsed_ms(self) -> float:
        return round((time.monotonic() - self.started) * 1000, 2)

    def degrade(self, what: str, err: GatewayError) -> None:
        """Part of the answer is left out because Gradium failed to give it (observers hear of it)."""
        self.degraded = (*self.degraded, Degraded(what, err.kind, err.message))


def _error_params(ctx: RequestContext) -> dict[str, Any]:
    """The mapping's `errors.params` (e.g. the API version that picks the error shape); a value that
    cannot be read is left out, never an error of its own."""
    out: dict[str, Any] = {}
    if ctx.req is None:
        return out
    for name, read in ctx.mapping.errors.params.items():
        try:
            value = read(ctx.req)
        except GatewayError:
            continue
        if value is not None:
            out[name] = value
    return out


def error_scope(ctx: RequestContext, err: GatewayError) -> dict[str, Any]:
    spec = ctx.mapping.errors.kinds[err.kind]
    return {
        **ctx.scope(),
        **_error_params(ctx),
        "error": {
            "kind": err.kind,
            "status": spec.status,
            "code": spec.code,
            "type": spec.type or spec.code,
            "message": err.message or spec.message or spec.code,
            "param": err.param,
            "close_code": spec.close,
            "reason": spec.reason or spec.code,
        },
    }


def request_id_headers(ctx: RequestContext) -> dict[str, str]:
    h = ctx.mapping.request_id_header
    return {h: ctx.request_id} if h else {}


def http_error(ctx: RequestContext, err: GatewayError) -> web.Response:
    spec = ctx.mapping.errors.kinds[err.kind]
    scope = error_scope(ctx, err)
    body = ctx.mapping.errors.http_body(scope)
    headers = {**request_id_headers(ctx), **(ctx.mapping.errors.http_headers(scope) or {})}
    if spec.status in (429, 503):
        headers.setdefault("Retry-After", "1")
    if isinstance(body, str):  # a template that renders text is a plain-text body (Cartesia before 2026-03-01)
        return web.Response(status=spec.status, text=body, content_type="text/plain",
                            headers={k: str(v) for k, v in headers.items()})
    return web.Response(
        status=spec.status,
        body=orjson.dumps(body),
        content_type="application/json",
        headers={k: str(v) for k, v in headers.items()},
    )


@dataclass(slots=True)
class SessionPlan:
    kind: str
    setup: dict[str, Any]
    info: SessionInfo
    transform: EventTransform


def plan_session(ctx: RequestContext, params: dict[str, Any], shared: dict[str, Any] | None = None) -> SessionPlan:
    """Route params -> the Gradium setup, the audio formats on both sides, and a fresh transform.

    `shared`: state the transform shares with the other requests of the same WebSocket context."""
    route = ctx.route
    assert route.spec.gradium is not None and route.setup is not None and route.transform is not None
    scope = ctx.scope(params)
    setup = route.setup(scope) or {}
    info = SessionInfo(ctx.request_id, params)
    if shared is not None:
        info.shared = shared
    kind = route.spec.gradium.kind
    if kind == "tts":
        assert route.audio_out is not None
        want = audio_format(route.audio_out(scope), "output_format")
        name = nearest_gradium_output(want)
        setup["output_format"] = name
        info.audio_out, info.gradium_out = want, GRADIUM_OUTPUT_FORMATS[name]
    else:
        rendered = route.audio_in(scope) if route.audio_in is not None else None
        # no encoding named: a container (wav, ogg, webm, mp3...) whose format is sniffed from its bytes
        have = audio_format(rendered, "encoding") if rendered and rendered.get("encoding") else None
        name = nearest_gradium_input(have) if have is not None else "pcm"
        setup["input_format"] = name
        info.audio_in, info.gradium_in = have, GRADIUM_INPUT_FORMATS[name]
    options = _options(route.transform, (route.transform_options or (lambda s: {}))(scope) or {})
    try:
        transform = route.transform(info, options)
    except AudioError as exc:
        raise GatewayError("unsupported_format", str(exc)) from None
    return SessionPlan(kind, setup, info, transform)


_OPTIONS: dict[tuple[type, bytes], BaseModel] = {}  # validated transform options by their rendered JSON
_OPTIONS_MAX = 1024


def _options(transform: type[EventTransform], raw: dict[str, Any]) -> BaseModel:
    """The transform's options, validated once per distinct value (once per session, most routes render
    the same few): transforms only read them, so sessions share one model."""
    try:
        key = (transform, orjson.dumps(raw, option=orjson.OPT_SORT_KEYS))
    except TypeError:  # not JSON (no such option today): validated every time
        return transform.Options.model_validate(raw)
    options = _OPTIONS.get(key)
    if options is None:
        options = transform.Options.model_validate(raw)  # a ValidationError is not cached
        if len(_OPTIONS) >= _OPTIONS_MAX:
            _OPTIONS.clear()
        _OPTIONS[key] = options
    return options


def _prime(transform: EventTransform) -> None:
    transform.prime()


async def prime_transform(transform: EventTransform) -> None:
    """The transform's `prime` (codecs opened ahead of the first audio), where its heavy work runs."""
    await offload(transform.heavy, _prime, transform)


async def transform_gradium(transform: EventTransform, msg: dict[str, Any]) -> list[Event]:
    """A Gradium message through the session's transform (audio on a codec thread when heavy)."""
    if transform.heavy and msg.get("type") == gradium.AUDIO:
        return await offload(True, transform.on_gradium, msg)
    return transform.on_gradium(msg)  # inline, without the coroutine `offload` would cost per message


def render_event(route: CompiledRoute, base_scope: dict[str, Any], name: str, fields: dict[str, Any]) -> Any:
    """An event rendered by the route's template for it; None when the route does not show it."""
    tpl = route.render.get(name)
    if tpl is None:
        return None
    scope = base_scope.copy()
    scope.update(fields)
    return tpl(scope)
