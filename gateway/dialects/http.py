"""HTTP routes: one request -> one Gradium session, rendered as raw audio, JSON, NDJSON or SSE.

The response is streamed: headers go out once Gradium has said `ready` (so auth, voice and setup
errors still get a proper provider-shaped status), then each event is written as it arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from gateway.addons import ADDONS, Tap
from gateway.auth import find_credential
from gateway.dialects.common import (
    AUTH,
    GRADIUM,
    SETTINGS,
    RequestContext,
    SessionPlan,
    error_scope,
    http_error,
    plan_session,
    prime_transform,
    render_event,
    request_id_headers,
    transform_gradium,
)
from gateway.dialects.http_upload import feed_upload
from gateway.dialects.read_deadline import ReadDeadline
from gateway.errors import GatewayError
from gateway.events import Flow
from gateway.mapping.compiler import CompiledMapping, CompiledRoute
from gateway.mapping.params import RequestData
from gateway.mapping.template import Messages
from gateway.observability import bind_request, unbind_request
from gateway.upstream import protocol as gradium_msg
from gateway.upstream.errors import UpstreamClosed
from gateway.upstream.gradium import GradiumStream
from gateway.upstream.sequence import SequenceStream

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BuiltinHandler = Callable[[web.Request, RequestContext, RequestData], Awaitable[web.StreamResponse]]
BUILTINS: dict[str, BuiltinHandler] = {}


def _sources(route: CompiledRoute) -> set[str]:
    out: set[str] = set()
    for p in route.spec.params.values():
        for s in p.sources:
            out.add(s.split(".")[0])
    return out


async def read_request(request: web.Request, route: CompiledRoute, sources: set[str], tap: Tap) -> RequestData:
    """The request's fields; the tap hears the request as its client frame (the body when it is read
    whole here, else empty: audio streamed to Gradium, body or form file, follows chunk by chunk)."""
    req = RequestData(path=request.match_info, query=request.query, header=request.headers)
    raw = b""
    g = route.spec.gradium
    if g is not None and g.kind == "asr" and g.audio_from == "body" and request.content_type != "application/json":
        tap.frame(raw)
        return req  # the body is audio, streamed to Gradium as it arrives
    try:
        if "body" in sources:
            raw = await request.read()
            if raw.strip():
                try:
                    req.body = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    raise GatewayError("invalid_json", "Request body is not valid JSON") from None
                if not isinstance(req.body, dict):
                    raise GatewayError("invalid_request", "Request body must be a JSON object")
            else:
                req.body = {}
        elif "form" in sources:
            if not request.content_type.startswith(("multipart/", "application/x-www-form-urlencoded")):
                raise GatewayError("invalid_request", "Expected a multipart/form-data body")
            req.form = await request.post()
    except web.HTTPRequestEntityTooLarge:
        raise GatewayError("payload_too_large", "Request body is too large") from None
    except ValueError as exc:  # malformed multipart
        raise GatewayError("invalid_request", f"Malformed form body: {exc}") from None
    finally:
        tap.frame(raw)
    return req


GONE = GatewayError("client_gone", "the client closed the connection")


def route_handler(mapping: CompiledMapping, route: CompiledRoute) -> Handler:
    sources = _sources(route)

    async def handle(request: web.Request) -> web.StreamResponse:
        ctx = RequestContext(mapping, route)
        ctx.req = RequestData(path=request.match_info, query=request.query, header=request.headers)
        bind_request(ctx.request_id, mapping.provider, route.name)
        tap = Tap(request.app[ADDONS], Flow(mapping.provider, route.name, "http", request_id=ctx.request_id,
                                            started=ctx.started))
        tap.start()
        status = 500
        failure: GatewayError | None = None
        exc: BaseException | None = None
        try:
            req = await read_request(request, route, sources, tap)
            if route.spec.builtin is not None:
                tap.action("builtin", None)
                resp = await BUILTINS[route.spec.builtin](request, ctx, req)
            elif route.static is not None:
                tap.action("static", None)
                await request.app[AUTH].authorize(find_credential(mapping.credentials, req), mapping.provider,
                                                  route.name)
                params = route.read_params(req)
                resp = web.Response(
                    body=orjson.dumps(route.static(ctx.scope(params))),
                    content_type="application/json",
                    headers=request_id_headers(ctx),
                )
            else:
                resp = await _gradium_session(request, ctx, req, tap)
            status = resp.status
            if tap.first_output is None and isinstance(resp, web.Response) and isinstance(resp.body, bytes):
                tap.output(resp.body)  # a whole body (JSON answers, catalogue pages, tokens)
            return resp
        except MidStreamFailure as mid:
            failure, status = mid.err, mid.resp.status
            return mid.resp
        except GatewayError as err:
            failure = err
            resp = http_error(ctx, err)
            status = resp.status
            return resp
        except ConnectionResetError:  # the caller left mid-body or mid-answer: nobody's bug, nobody to answer
            status = 499
            failure = GONE
            return web.Response(status=499)
        except Exception as e:
            # a bug, not bad input: logged with its traceback (by the log addon), answered in the provider's shape
            exc = e
            failure = GatewayError("internal", "Internal gateway error")
            resp = http_error(ctx, failure)
            status = resp.status
            return resp
        finally:
            tap.end(str(status), http_status=status, exc=exc, degraded=ctx.degraded,
                    kind=failure.kind if failure is not None else None,
                    message=failure.message if failure is not None else None)
            unbind_request()

    return handle


class MidStreamFailure(Exception):
    """Gradium failed after the response started: the response as it ended, and why (for the session end)."""

    def __init__(self, resp: web.StreamResponse, err: GatewayError) -> None:
        self.resp = resp
        self.err = err


async def _gradium_session(request: web.Request, ctx: RequestContext, req: RequestData,
                           tap: Tap) -> web.StreamResponse:
    route = ctx.route
    spec = route.spec.gradium
    assert spec is not None
    key = await request.app[AUTH].authorize(find_credential(ctx.mapping.credentials, req), ctx.mapping.provider,
                                            route.name)
    params = route.read_params(req)
    plan = plan_session(ctx, params)
    base_scope = ctx.scope(params)
    gradium = request.app[GRADIUM]
    if spec.kind == "asr":
        upstream = await gradium.open_ws("asr", plan.setup, key)
        feeder = asyncio.create_task(feed_upload(request, req, spec.audio_from, plan, upstream, tap))
        try:
            return await _first_then_respond(request, ctx, plan, upstream, base_scope, tap)
        except GatewayError:
            # the upstream may have been closed because the caller's audio was bad: report that, not the
            # close (but a feeder that only saw Gradium's close leaves the word to Gradium's reason)
            await asyncio.wait({feeder}, timeout=2.0)
            exc = feeder.exception() if feeder.done() and not feeder.cancelled() else None
            if isinstance(exc, GatewayError) and not isinstance(exc, UpstreamClosed):
                raise exc from None
            raise
        finally:
            feeder.cancel()
            with contextlib.suppress(BaseException):
                await feeder
    segments = _segments(route.segments(base_scope)) if route.segments is not None else None
    text = route.text(base_scope) if route.text is not None else None
    if segments is not None:
        text = " ".join(seg["text"] for seg in segments)
    if not text:
        raise GatewayError("invalid_request", "text must not be empty", "text")
    limit = request.app[SETTINGS].limits.max_text_chars
    if len(text) > limit:
        raise GatewayError("invalid_request", f"text is longer than {limit} characters", "text")
    base_scope["char_count"] = len(text)
    upstream: GradiumStream
    if segments is not None:  # one Gradium request per segment (e.g. per dialogue line and its voice)
        sequence = SequenceStream(gradium, spec.kind, key, plan.setup, segments)
        await sequence.start()
        upstream = sequence
    elif spec.upstream == "rest" and not plan.setup.get("pronunciation_id"):  # Gradium applies it on WS only
        upstream = await gradium.post(spec.kind, key, json=gradium_msg.rest_tts(plan.setup, text))
    else:
        upstream = await gradium.open_ws(spec.kind, plan.setup, key)
        try:
            await upstream.send(gradium_msg.text(text))
            await upstream.send(gradium_msg.end_of_stream())
        except BaseException:
            await upstream.close()  # _first_then_respond owns it only from there on
            raise
    tap.action("text", None)  # the whole text went to Gradium, and with it the end of the input
    tap.action("end_of_stream", None)
    return await _first_then_respond(request, ctx, plan, upstream, base_scope, tap)


def _segments(value: Any) -> list[dict[str, Any]]:
    """A rendered `gradium.segments`: a non-empty list of {text, setup?, ...} with non-empty texts."""
    if not isinstance(value, list) or not value:
        raise GatewayError("invalid_request", "at least one input is required", "inputs")
    for seg in value:
        if not isinstance(seg, dict) or not isinstance(seg.get("text"), str) or not seg["text"].strip():
            raise GatewayError("invalid_request", "every input needs a non-empty text", "inputs")
        if seg.get("setup") is not None and not isinstance(seg["setup"], dict):
            raise GatewayError("internal", "segment setup must be an object")
    return value


async def next_message(upstream: GradiumStream, timeout_s: float) -> dict[str, Any] | None:
    """Gradium's next message within `gradium.message_timeout_s`: no wait on Gradium is unbounded.
    A timer, not `wait_for`: that would run every read in a task of its own (a task switch per frame)."""
    try:
        async with asyncio.timeout(timeout_s):
            return await upstream.recv()
    except TimeoutError:
        raise GatewayError("upstream_unavailable", "Gradium did not answer in time") from None


async def _first_then_respond(
    request: web.Request, ctx: RequestContext, plan: SessionPlan, upstream: GradiumStream, base_scope: dict[str, Any],
    tap: Tap,
) -> web.StreamResponse:
    tap.upstream_format = plan.setup.get("output_format") or plan.setup.get("input_format")
    # The encoder opens on a codec thread while Gradium prepares the first audio, not after it came
    # (only heavy transforms have a codec to open: no task for the others).
    primed = asyncio.ensure_future(prime_transform(plan.transform)) if plan.transform.heavy else None
    try:
        first = await asyncio.wait_for(upstream.recv(), timeout=request.app[SETTINGS].gradium.ready_timeout_s)
        if primed is not None:
            await primed
        if first is None:
            raise GatewayError("upstream_error", "Gradium ended the session before it started")
        return await _respond(request, ctx, plan, upstream, first, base_scope, tap)
    except TimeoutError:
        raise GatewayError("upstream_unavailable", "Gradium did not answer in time") from None
    finally:
        if primed is not None and not primed.done():
            primed.cancel()
            await asyncio.gather(primed, return_exceptions=True)  # no task outlives the request
        await upstream.close()


def _frame(kind: str, name: str, item: Any, sse_event: str | None) -> bytes:
    """One rendered event as an NDJSON line or an SSE event (`event:` named by the route's `sse_event`
    field of the message when it has one, else by the transform's event name)."""
    data = orjson.dumps(item)
    if kind == "ndjson":
        return data + b"\n"
    if sse_event and isinstance(item, dict) and isinstance(item.get(sse_event), str):
        name = item[sse_event]
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


def _frames(kind: str, name: str, rendered: Any, sse_event: str | None) -> bytes:
    """A rendered event, or the several messages of a `$messages` event, framed for the stream."""
    if rendered is None:
        return b""
    items = rendered if isinstance(rendered, Messages) else (rendered,)
    return b"".join(_frame(kind, name, item, sse_event) for item in items)


async def _respond(
    request: web.Request,
    ctx: RequestContext,
    plan: SessionPlan,
    upstream: GradiumStream,
    first: dict[str, Any],
    base_scope: dict[str, Any],
    tap: Tap,
) -> web.StreamResponse:
    route = ctx.route
    kind = route.spec.response.kind
    headers = {k: str(v) for k, v in (route.headers(base_scope) or {}).items() if v is not None}
    headers.update(request_id_headers(ctx))
    transform = plan.transform
    heavy = transform.heavy  # else the transform runs inline: no coroutine per Gradium message
    timeout_s = request.app[SETTINGS].gradium.message_timeout_s

    if kind == "json":
        body = None
        msg: dict[str, Any] | None = first
        while msg is not None:
            for name, fields in await transform_gradium(transform, msg) if heavy else transform.on_gradium(msg):
                rendered = render_event(route, base_scope, name, fields)
                if rendered is not None:
                    body = rendered
            msg = await next_message(upstream, timeout_s)
        tap.upstream_request_id = upstream.request_id
        return web.Response(body=orjson.dumps(body), content_type="application/json", headers=headers)

    resp = web.StreamResponse(headers=headers)
    if route.spec.response.content_type:
        resp.content_type = route.spec.response.content_type
    elif kind == "audio":
        resp.content_type = plan.info.audio_out.mime if plan.info.audio_out else "application/octet-stream"
    else:
        resp.content_type = {"ndjson": "application/x-ndjson", "sse": "text/event-stream"}[kind]
    if kind == "sse":
        resp.headers["Cache-Control"] = "no-cache"
    sse_event = route.spec.response.sse_event
    if request.version >= (1, 1):
        resp.enable_chunked_encoding()
    # else an HTTP/1.0 client: no chunking there, so the body runs to the connection's close
    await resp.prepare(request)
    msg = first
    deadline = ReadDeadline(timeout_s)
    clock = deadline.clock
    try:
        try:
            while msg is not None:
                for name, fields in await transform_gradium(transform, msg) if heavy else transform.on_gradium(msg):
                    if kind == "audio":
                        chunk = fields.get("audio") if name == "audio" else None
                    else:
                        chunk = _frames(kind, name, render_event(route, base_scope, name, fields), sse_event)
                    if chunk:
                        await resp.write(chunk)
                        tap.output(chunk)  # observers after the write: the first audio does not wait for them
                deadline.since = clock()
                msg = await upstream.recv()
                deadline.since = None
        except asyncio.CancelledError:
            if not deadline.expired:
                raise
            raise deadline.timed_out() from None
        finally:
            deadline.handle.cancel()
    except GatewayError as err:
        tap.upstream_request_id = upstream.request_id
        if kind in ("sse", "ndjson") and "error" in route.render:
            # The route has an in-stream error event (Cartesia SSE `event: error`): it ends the stream.
            rendered = render_event(route, {**base_scope, **error_scope(ctx, err)}, "error", {})
            chunk = _frames(kind, "error", rendered, sse_event)
            tap.output(chunk)
            with contextlib.suppress(ConnectionError, RuntimeError):
                await resp.write(chunk)
                await resp.write_eof()
            raise MidStreamFailure(resp, err) from None
        # Headers are gone: cut the connection so the client sees a failed download, not a short file.
        if request.transport is not None:
            request.transport.abort()
        raise MidStreamFailure(resp, err) from None
    tap.upstream_request_id = upstream.request_id
    await resp.write_eof()
    return resp
