"""HTTP speech-to-text: the caller's audio (raw body, a form file part, or a fetched URL) streamed through
the audio leg to Gradium, chunk by chunk, each chunk shown to addons as a client frame."""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway.addons import Tap
from gateway.audio.leg import AudioLeg
from gateway.audio.transcode import AudioError
from gateway.dialects.common import SETTINGS, SessionPlan
from gateway.dialects.fetch import fetch_audio
from gateway.errors import GatewayError
from gateway.mapping.params import RequestData
from gateway.upstream import protocol as gradium_msg
from gateway.upstream.gradium import GradiumStream

AUDIO_CHUNK = 32 * 1024


async def feed_upload(request: web.Request, req: RequestData, source: str, plan: SessionPlan,
                      upstream: GradiumStream, tap: Tap) -> None:
    """Stream the caller's audio (raw body, or a form file part) through the transcoder to Gradium."""
    try:
        await _feed(request, req, source, plan, upstream, tap)
    except AudioError as exc:
        await upstream.close()
        raise GatewayError("invalid_audio", str(exc)) from None
    except GatewayError:
        await upstream.close()
        raise
    except (OSError, asyncio.IncompleteReadError, web.HTTPException):
        await upstream.close()  # the caller went away mid-upload
        raise


async def _feed(request: web.Request, req: RequestData, source: str, plan: SessionPlan,
                upstream: GradiumStream, tap: Tap) -> None:
    try:
        assert plan.info.gradium_in is not None
        leg = AudioLeg(plan.info.audio_in, plan.info.gradium_in)
    except AudioError as exc:
        raise GatewayError("unsupported_format", str(exc)) from None

    async def send(chunk: bytes) -> None:
        if req.body is None:  # the client's own audio (not fetched from a URL), chunk by chunk like frames
            tap.frame(chunk)
        tap.action("audio", None)
        plan.transform.on_action("audio", {"audio": chunk})
        pcm = await leg.pcm(chunk)
        if pcm:
            await upstream.send_audio(pcm)

    total = 0
    if source == "body" and req.body is not None:
        # JSON `{"url": ...}`: remote audio, fetched only from the prefixes allowed in `fetch.allow`
        async for chunk in fetch_audio(request.app, req.body.get("url")):
            total += len(chunk)
            await send(chunk)
    elif source == "body":
        limit = request.app[SETTINGS].limits.max_body_bytes  # aiohttp only enforces it on read()/post()
        async for chunk in request.content.iter_chunked(AUDIO_CHUNK):
            total += len(chunk)
            if total > limit:
                raise GatewayError("payload_too_large", "Request body is too large")
            await send(chunk)
    else:
        part = req.form.get(source.split(".", 1)[1]) if req.form else None
        data = part.file.read() if hasattr(part, "file") else part.encode() if isinstance(part, str) else None
        if not data:
            raise GatewayError("invalid_request", f"{source.split('.', 1)[1]}: an audio file is required",
                               source.split(".", 1)[1])
        for i in range(0, len(data), AUDIO_CHUNK):
            total += len(data[i : i + AUDIO_CHUNK])
            await send(data[i : i + AUDIO_CHUNK])
    if total == 0:
        raise GatewayError("invalid_audio", "No audio in the request")
    tail = leg.flush(final=True)
    if tail is not None:
        await upstream.send(tail)
    await upstream.send(gradium_msg.end_of_stream())
    tap.action("end_of_stream", None)
