"""Addons see every request and session through typed events; a failing addon never reaches a client."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from gateway.addons import ADDONS, AddonManager, default_addons
from gateway.events import (
    ActionTaken,
    ClientFrame,
    ClientOutput,
    ContextEnd,
    FirstOutput,
    Flow,
    SessionEnd,
    SessionStart,
    hook_name,
)
from gateway.observability import Metrics, configure_logging
from tests.audiocheck import wav_bytes
from tests.conftest import Gateway

VOICE = "21m00Tcm4TlvDq8ikWAM"


class Recorder:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def session_start(self, ev: SessionStart) -> None:
        self.events.append(ev)

    def client_frame(self, ev: ClientFrame) -> None:
        self.events.append(ev)

    def action_taken(self, ev: ActionTaken) -> None:
        self.events.append(ev)

    def client_output(self, ev: ClientOutput) -> None:
        self.events.append(ev)

    def first_output(self, ev: FirstOutput) -> None:
        self.events.append(ev)

    def context_end(self, ev: ContextEnd) -> None:
        self.events.append(ev)

    def session_end(self, ev: SessionEnd) -> None:
        self.events.append(ev)

    def of(self, cls: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, cls)]


class Broken:
    """Raises in every hook."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)

        def boom(ev: Any) -> None:
            raise RuntimeError(f"addon bug in {name}")

        return boom


def test_hook_names_follow_class_names() -> None:
    for cls in (SessionStart, ClientFrame, ActionTaken, ClientOutput, FirstOutput, ContextEnd, SessionEnd):
        assert cls.hook == hook_name(cls)


def test_hooks_are_precomputed_and_empty_hooks_cost_nothing() -> None:
    class OnlyEnd:
        def session_end(self, ev: SessionEnd) -> None:
            pass

    m = AddonManager([OnlyEnd()])
    assert m.client_frame == () and m.client_output == () and len(m.session_end) == 1
    m.emit(ClientFrame(Flow("p", "r", "ws"), b"x", 0.0))  # nobody listens: nothing happens


def test_the_builtin_addons_want_nothing_per_frame() -> None:
    """Metrics and logs hear of a session's start, first output and end: a frame builds no event."""
    m = AddonManager(default_addons(Metrics()))
    assert m.client_frame == () and m.client_output == () and m.action_taken == ()
    assert len(m.first_output) == 1 and len(m.session_end) == 2


def test_an_addon_that_watches_some_sessions_hears_only_their_frames() -> None:
    """`watches(flow)` is asked once the session started; an unwatched session builds no event per frame
    or output for it, while an addon without `watches` hears every session."""
    from gateway.addons import Tap

    class Sampled:
        def __init__(self) -> None:
            self.frames: list[Any] = []
            self.outputs: list[Any] = []

        def session_start(self, ev: SessionStart) -> None:
            if ev.flow.route == "sampled":
                ev.flow.data["mine"] = True

        def watches(self, flow: Flow) -> bool:
            return "mine" in flow.data

        def client_frame(self, ev: ClientFrame) -> None:
            self.frames.append(ev.data)

        def client_output(self, ev: ClientOutput) -> None:
            self.outputs.append(ev.data)

    class Everything(Sampled):
        watches = None  # type: ignore[assignment]

    sampled, every = Sampled(), Everything()
    m = AddonManager([sampled, every])
    for route in ("other", "sampled"):
        tap = Tap(m, Flow("p", route, "ws"))
        tap.start()
        tap.frame(f"in-{route}")
        tap.output(f"out-{route}")
    assert sampled.frames == ["in-sampled"] and sampled.outputs == ["out-sampled"]
    assert every.frames == ["in-other", "in-sampled"] and every.outputs == ["out-other", "out-sampled"]
    assert m.per_flow(Flow("p", "other", "ws")) == ((every.client_frame,), (every.client_output,))


async def test_websocket_session_events(gateway: Gateway) -> None:
    rec = Recorder()
    gateway.app[ADDONS].register(rec)
    path = f"/v1/text-to-speech/{VOICE}/multi-stream-input?output_format=pcm_16000"
    async with aiohttp.ClientSession() as s, s.ws_connect(gateway.ws + path, headers={"xi-api-key": "k"}) as ws:
        await ws.send_json({"text": "Hello there ", "context_id": "a"})
        await ws.send_json({"context_id": "a", "close_context": True})
        await ws.send_json({"close_socket": True})
        async for _ in ws:
            pass
    for _ in range(100):
        if rec.of(SessionEnd):
            break
        await asyncio.sleep(0.02)
    start = rec.of(SessionStart)[0]
    flow = start.flow
    assert (flow.provider, flow.route, flow.target, flow.transport) == (
        "elevenlabs", "tts_multi_stream_input", "gradium", "ws")
    assert next(f.data for f in rec.of(ClientFrame)) == '{"text": "Hello there ", "context_id": "a"}'
    assert [(a.action, a.context) for a in rec.of(ActionTaken)] == [
        ("text", "a"), ("end_of_stream", "a"), ("close", None)]
    outs = rec.of(ClientOutput)
    assert outs and [o.first for o in outs] == [True] + [False] * (len(outs) - 1)
    assert [(c.context, c.reason) for c in rec.of(ContextEnd)] == [("a", "done")]
    end = rec.of(SessionEnd)[0]
    assert [f.t for f in rec.of(FirstOutput)] == [end.first_output]
    assert rec.events.index(rec.of(FirstOutput)[0]) + 1 == rec.events.index(outs[0])
    assert (end.status, end.close_code, end.frames_in, end.events_out) == ("ok", 1000, 3, len(outs))
    assert all(e.flow is flow for e in rec.events)
    assert isinstance(rec.events[0], SessionStart) and isinstance(rec.events[-1], SessionEnd)


async def test_http_request_events(gateway: Gateway) -> None:
    rec = Recorder()
    gateway.app[ADDONS].register(rec)
    url = f"{gateway.http}/v1/text-to-speech/{VOICE}/stream?output_format=pcm_16000"
    async with aiohttp.ClientSession() as s, s.post(url, json={"text": "hi"}, headers={"xi-api-key": "k"}) as r:
        body = await r.read()
    end = rec.of(SessionEnd)[0]
    assert (end.flow.transport, end.status, end.http_status, end.bytes_out) == ("http", "200", 200, len(body))
    assert rec.of(ClientOutput)[0].first and sum(o.size for o in rec.of(ClientOutput)) == len(body)
    # like a socket: the request is the client's frame, then the actions, the outputs, the end
    assert [json.loads(f.data) for f in rec.of(ClientFrame)] == [{"text": "hi"}] and end.frames_in == 1
    assert [(a.action, a.context) for a in rec.of(ActionTaken)] == [("text", None), ("end_of_stream", None)]
    kinds = [type(e).__name__ for e in rec.events]
    assert kinds[:4] == ["SessionStart", "ClientFrame", "ActionTaken", "ActionTaken"]
    assert kinds[-1] == "SessionEnd" and kinds[4] == "FirstOutput" and set(kinds[5:-1]) == {"ClientOutput"}
    assert all(e.flow is end.flow for e in rec.events)


async def test_http_streamed_audio_and_builtin_events(gateway: Gateway) -> None:
    rec = Recorder()
    gateway.app[ADDONS].register(rec)
    audio = wav_bytes("hello world", 16000)
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{gateway.http}/v1/listen", data=audio,
                          headers={"Authorization": "Token k", "Content-Type": "audio/wav"}) as r:
            assert r.status == 200 and (await r.json())["results"]
        async with s.get(f"{gateway.http}/v1/voices", headers={"xi-api-key": "k"}) as r:
            assert r.status == 200
            page = await r.read()
    stt, voices = rec.of(SessionEnd)
    frames = [f for f in rec.of(ClientFrame) if f.flow is stt.flow]
    assert frames[0].data == b"" and b"".join(f.data for f in frames[1:]) == audio  # type: ignore[misc]
    actions = [a.action for a in rec.of(ActionTaken) if a.flow is stt.flow]
    assert actions[-1] == "end_of_stream" and set(actions[:-1]) == {"audio"} and len(actions) == len(frames)
    assert [a.action for a in rec.of(ActionTaken) if a.flow is voices.flow] == ["builtin"]
    outs = [o for o in rec.of(ClientOutput) if o.flow is voices.flow]
    assert [(o.first, o.data) for o in outs] == [(True, page)] and voices.status == "200"


async def test_a_failing_addon_is_logged_and_counted_never_seen_by_the_client(gateway: Gateway) -> None:
    addons = gateway.app[ADDONS]
    addons.register(Broken())
    path = f"/v1/text-to-speech/{VOICE}/stream-input?output_format=pcm_16000"
    got = []
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(gateway.ws + path, headers={"xi-api-key": "k"}) as ws:
            await ws.send_json({"text": "Still spoken "})
            await ws.send_json({"text": ""})
            async for msg in ws:
                got.append(msg.json())
        assert ws.close_code == 1000 and got[-1]["isFinal"] and any(m.get("audio") for m in got)
        async with s.post(f"{gateway.http}/v1/text-to-speech/{VOICE}?output_format=pcm_16000",
                          json={"text": "hi"}, headers={"xi-api-key": "k"}) as r:
            assert r.status == 200 and await r.read()
        for _ in range(100):
            if addons.errors["Broken.session_end"] >= 2:
                break
            await asyncio.sleep(0.02)
        assert {"Broken.session_start", "Broken.client_frame", "Broken.action_taken", "Broken.client_output",
                "Broken.session_end"} <= set(addons.errors)
        async with s.get(gateway.http + "/metrics") as r:
            assert 'gateway_addon_errors_total{addon="Broken.session_end"}' in await r.text()


async def test_log_addon_writes_one_line_for_every_request_successes_included(gateway: Gateway,
                                                                              tmp_path: Path) -> None:
    buf = io.StringIO()
    configure_logging("info", stream=buf)
    try:
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{gateway.http}/v1/listen", data=wav_bytes("hello world", 16000),
                              headers={"Authorization": "Token k", "Content-Type": "audio/wav"}) as r:
                assert r.status == 200 and (await r.json())["results"]
            async with s.get(f"{gateway.http}/v1/voices", headers={"xi-api-key": "k"}) as r:
                assert r.status == 200
    finally:
        configure_logging("info")
        structlog.contextvars.clear_contextvars()
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    done = [x for x in lines if x["event"] == "request.done"]
    assert [(x["provider"], x["route"], x["status"], x["target"]) for x in done] == [
        ("deepgram", "listen_prerecorded", 200, "gradium"), ("elevenlabs", "voices_list", 200, "gradium")]
    assert all(x["request_id"] and x["ms"] >= 0 and x["bytes"] > 0 for x in done)
    assert done[0]["upstream_request_id"] and done[0]["first_output_ms"] is not None


async def test_readme_addon_example_runs_as_written(gateway: Gateway) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("### Adding an addon"):]
    code = section[section.index("```python") + len("```python"):section.index("```", section.index("```python") + 9)]
    scope: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert type(scope["app"][ADDONS].addons[-1]).__name__ == "CountClears"
    counter = scope["CountClears"]()
    gateway.app[ADDONS].register(counter)
    url = f"{gateway.ws}/tts/websocket?api_key=k&cartesia_version=2025-04-16"
    async with aiohttp.ClientSession() as s, s.ws_connect(url) as ws:
        await ws.send_json({"context_id": "x", "cancel": True})
        await ws.close()
    for _ in range(100):
        if counter.clears:
            break
        await asyncio.sleep(0.02)
    assert counter.clears == {"cartesia": 1}


async def test_an_answer_without_gradium_voices_is_a_degraded_request_line(gateway: Gateway) -> None:
    """The catalogue answers from its table when Gradium's voice list fails; the log addon says so (the
    dialects write no log lines of their own)."""
    from gateway.emulator.faults import FAULTS

    rec = Recorder()
    gateway.app[ADDONS].register(rec)
    gateway.emulator.app[FAULTS].update({"http_status": 503, "match_path": "voices", "times": 1})
    buf = io.StringIO()
    configure_logging("info", stream=buf)
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{gateway.http}/v1/voices", headers={"xi-api-key": "k"}) as r:
                assert r.status == 200 and (await r.json())["voices"]
            async with s.get(gateway.http + "/metrics") as r:
                assert ('gateway_degraded_answers_total{provider="elevenlabs",route="voices_list",'
                        'what="catalogue.gradium_voices"} 1.0') in await r.text()
    finally:
        configure_logging("info")
        structlog.contextvars.clear_contextvars()
    end = rec.of(SessionEnd)[0]
    assert [(d.what, d.kind) for d in end.degraded] == [("catalogue.gradium_voices", "upstream_error")]
    line = next(json.loads(x) for x in buf.getvalue().splitlines() if json.loads(x)["event"] == "request.done")
    assert line["level"] == "warning" and line["degraded"][0]["what"] == "catalogue.gradium_voices"
    assert line["request_id"] == end.flow.request_id
