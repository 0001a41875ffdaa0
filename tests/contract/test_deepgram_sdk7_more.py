"""`deepgram-sdk` 7.x on the rest of the Deepgram surface (only its environment's base URLs changed):
grants, Flux `/v2/listen`, TTS REST and WebSocket `/v1/speak`, projects and models, URL transcription."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from deepgram import AsyncDeepgramClient, DeepgramClientEnvironment
from deepgram.core.api_error import ApiError
from deepgram.speak.v1.types.speak_v1text import SpeakV1Text

from gateway.emulator.stats import STATS
from tests.audiocheck import decode, expected_words, speech, wav_bytes, words
from tests.conftest import Emulator, Gateway, gateway_settings, run_app, start_gateway

TEXT = "hello world. how are you today?"


def env(gw: Gateway) -> DeepgramClientEnvironment:
    return DeepgramClientEnvironment(base=gw.http, production=gw.ws, agent=gw.ws, agent_rest=gw.http)


def dg(gw: Gateway, key: str = "gsk_test", **kw: Any) -> AsyncDeepgramClient:
    if "access_token" in kw:
        return AsyncDeepgramClient(environment=env(gw), **kw)
    return AsyncDeepgramClient(api_key=key, environment=env(gw), **kw)


# -- 1. credentials ------------------------------------------------------------------------------


async def test_grant_mints_a_jwt_accepted_as_bearer_everywhere(gateway: Gateway) -> None:
    grant = await dg(gateway).auth.v1.tokens.grant(ttl_seconds=60)
    assert grant.expires_in == 60
    header, payload, sig = grant.access_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert json.loads(base64.urlsafe_b64decode(header + "==="))["typ"] == "JWT" and sig
    assert claims["exp"] - claims["iat"] == 60
    assert (await dg(gateway).auth.v1.tokens.grant()).expires_in == 30  # Deepgram's default
    client = dg(gateway, access_token=grant.access_token)  # `Authorization: bearer <jwt>`
    r = await client.listen.v1.media.transcribe_file(request=wav_bytes("fine", 16000), model="nova-3")
    assert r.results.channels[0].alternatives[0].transcript == "fine"
    audio = b"".join([c async for c in client.speak.v1.audio.generate(text="ok.", encoding="linear16",
                                                                        container="none", sample_rate=16000)])
    assert words(decode(audio, "s16le", 16000).pcm, 16000) == ["ok."]
    async with client.listen.v2.connect(model="flux-general-en", encoding="linear16", sample_rate="16000") as c:
        assert (await c.recv()).type == "Connected"
    async with client.speak.v1.connect(model="aura-2-thalia-en", encoding="linear16", sample_rate=16000) as c:
        assert (await c.recv()).type == "Metadata"
    # in the browser form: `Sec-WebSocket-Protocol: bearer, <jwt>`, the chosen subprotocol echoed
    async with aiohttp.ClientSession() as s:
        for path in ("/v1/listen", "/v2/listen", "/v1/speak"):
            async with s.ws_connect(f"{gateway.ws}{path}", protocols=("bearer", grant.access_token)) as ws:
                assert ws.protocol == "bearer" and ws._response.headers["dg-request-id"]
        # an unknown or forged token is refused like a bad key, with dg-error
        forged = grant.access_token[:-4] + "AAAA"
        async with s.get(f"{gateway.http}/v1/listen", headers={"Authorization": f"Bearer {forged}x"}) as r:
            assert r.status == 401 and r.headers["dg-error"] and r.headers["dg-request-id"]


async def test_grant_and_manage_refuse_bad_keys(gateway: Gateway) -> None:
    with pytest.raises(ApiError) as e:
        await dg(gateway, key="revoked_key").auth.v1.tokens.grant()
    assert e.value.status_code == 401
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{gateway.http}/v1/auth/grant", json={"ttl_seconds": "long"},
                          headers={"Authorization": "token gsk_test"}) as r:
            body = await r.json()
            assert r.status == 400 and body["err_msg"] and r.headers["dg-request-id"] == body["request_id"]
        async with s.get(f"{gateway.http}/v1/projects", headers={"Authorization": "Token revoked_k"}) as r:
            assert r.status == 401 and (await r.json())["err_code"] == "INVALID_AUTH"


# -- 2. prerecorded ------------------------------------------------------------------------------


async def test_prerecorded_complete_response(gateway: Gateway) -> None:
    audio = wav_bytes("Hello there. How are you today?", 16000)
    r = await dg(gateway).listen.v1.media.transcribe_file(
        request=audio, model="nova-3", punctuate=True, diarize=True, utterances=True, paragraphs=True,
        utt_split=0.25, keyterm=["Gradium", "speech gateway"], detect_language=True, filler_words=True)
    m = r.metadata
    assert m.request_id and len(m.sha256) == 64 and m.created and m.duration > 1.0
    assert m.channels == 1 and m.models and m.model_info[m.models[0]]["name"] == "nova-3"
    ch = r.results.channels[0]
    assert ch.detected_language == "en"
    alt = ch.alternatives[0]
    assert alt.transcript == "Hello there. How are you today?" and alt.confidence > 0.5
    assert [w.punctuated_word for w in alt.words] == ["Hello", "there.", "How", "are", "you", "today?"]
    assert all(w.speaker == 0 for w in alt.words)
    paras = alt.paragraphs.paragraphs
    assert [s.text for p in paras for s in p.sentences] == ["Hello there.", "How are you today?"]
    assert [u.transcript for u in r.results.utterances] == ["Hello there.", "How are you today?"]
    setup = gateway.emulator.app[STATS].setups[-1]["setup"]
    assert setup["json_config"]["keywords"] == {"words": ["Gradium", "speech", "gateway"], "boost": 3}


@pytest.mark.parametrize(("name", "fmt", "content_type"), [
    ("mp3", "mp3", "audio/mpeg"), ("ogg", "ogg", "audio/ogg"), ("flac", "flac", "audio/flac"),
    ("webm", "webm", "audio/webm"), ("raw", "s16le", "application/octet-stream"),
])
async def test_prerecorded_containers_and_chunked_uploads(gateway: Gateway, name: str, fmt: str,
                                                          content_type: str) -> None:
    import av
    import numpy as np

    text = "one two three."
    pcm = np.frombuffer(speech(text, 48000), dtype="<i2")
    if fmt == "s16le":
        data, query = pcm.tobytes(), "?encoding=linear16&sample_rate=48000"
    else:
        import io

        buf = io.BytesIO()
        codec = {"mp3": "libmp3lame", "ogg": "libopus", "flac": "flac", "webm": "libopus"}[fmt]
        with av.open(buf, "w", format=fmt) as out:
            st = out.add_stream(codec, rate=48000)
            st.layout = "mono"
            frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = 48000
            for p in st.encode(frame):
                out.mux(p)
            for p in st.encode(None):
                out.mux(p)
        data, query = buf.getvalue(), "?punctuate=true&no_delay=true&unknown_param=1"

    async def chunks():  # a chunked upload (no Content-Length), as SDK7's iterator bodies send
        for i in range(0, len(data), 4096):
            yield data[i : i + 4096]

    async with aiohttp.ClientSession() as s, s.post(
        f"{gateway.http}/v1/listen{query}", data=chunks(),
        headers={"Authorization": "Token gsk_test", "Content-Type": content_type},
    ) as r:
        body = await r.json()
        assert r.status == 200, body
        assert r.headers["dg-request-id"] == body["metadata"]["request_id"] and "request_id" not in body
        words_out = [w["word"] for w in body["results"]["channels"][0]["alternatives"][0]["words"]]
        assert words_out == [w.strip(".") for w in expected_words(text)]


async def test_prerecorded_url_fetched_only_when_allowed(emulator: Emulator, tls_files: dict[str, Path]) -> None:
    audio = wav_bytes("from a url.", 16000)

    async def serve(request: web.Request) -> web.Response:
        if request.path == "/missing.wav":
            return web.Response(status=404)
        return web.Response(body=audio, content_type="audio/wav")

    media = web.Application()
    media.router.add_get("/{name}", serve)
    async with run_app(media) as (port, _):
        base = f"http://127.0.0.1:{port}"
        settings = gateway_settings(emulator, tls_files, fetch={"allow": [base + "/"]})
        async with start_gateway(settings, emulator) as gw:
            r = await dg(gw).listen.v1.media.transcribe_url(url=f"{base}/a.wav", model="nova-3", punctuate=True)
            assert r.results.channels[0].alternatives[0].transcript == "From a url."
            with pytest.raises(ApiError) as e:
                await dg(gw).listen.v1.media.transcribe_url(url=f"{base}/missing.wav")
            assert e.value.status_code == 400 and "404" in e.value.body["err_msg"]
            with pytest.raises(ApiError) as e:  # not under an allowed prefix
                await dg(gw).listen.v1.media.transcribe_url(url="http://127.0.0.2:1/a.wav")
            assert e.value.status_code == 400 and "does not fetch" in e.value.body["err_msg"]


# -- 4. Flux -------------------------------------------------------------------------------------


async def send_pcm(conn: Any, pcm: bytes, rate: int, chunk_ms: int = 80, speedup: float = 4.0) -> None:
    """Audio paced at `speedup` x real time: an end-of-turn flush then lands in the pause that caused it, as
    with a live microphone (all at once, Gradium would be flushed while already deep in the next word)."""
    step = rate * 2 * chunk_ms // 1000
    for i in range(0, len(pcm), step):
        await conn.send_media(pcm[i : i + step])
        await asyncio.sleep(chunk_ms / 1000 / speedup)


async def test_flux_turns_with_sdk(gateway: Gateway) -> None:
    rate = 16000
    audio = speech(TEXT, rate) + bytes(rate * 2 * 2)  # 2 s of silence after the speech
    got: list[Any] = []
    async with dg(gateway).listen.v2.connect(model="flux-general-en", encoding="linear16", sample_rate=str(rate),
                                             eot_threshold="0.7", eager_eot_threshold="0.5",
                                             eot_timeout_ms="5000") as conn:
        first = await conn.recv()
        assert first.type == "Connected" and first.sequence_id == 0 and first.request_id
        await conn.send_configure({"type": "Configure", "thresholds": {"eot_threshold": 0.8}})
        await send_pcm(conn, audio, rate)
        await conn.send_close_stream()
        async for msg in conn:
            got.append(msg)
    seqs = [first.sequence_id] + [m.sequence_id for m in got]
    assert seqs == list(range(len(seqs)))
    assert got[0].type == "ConfigureSuccess" and got[0].thresholds.eot_threshold == 0.8
    turns = [m for m in got if m.type == "TurnInfo"]
    events = [m.event for m in turns if m.event != "Update"]
    assert events == ["StartOfTurn", "EagerEndOfTurn", "EndOfTurn"] * 2
    ends = [m for m in turns if m.event == "EndOfTurn"]
    assert [e.transcript for e in ends] == ["Hello world.", "How are you today?"]
    assert [e.turn_index for e in ends] == [0, 1] and all(e.trigger == "model" for e in ends)
    for m in turns:
        if m.transcript:
            assert m.words and all(w.word for w in m.words)
        assert m.audio_window_end >= m.audio_window_start
        assert 0.0 <= m.end_of_turn_confidence <= 1.0
    assert [w.word for w in ends[1].words] == ["How", "are", "you", "today?"]


async def test_flux_force_end_turn_and_configure_failure(gateway: Gateway) -> None:
    rate = 16000
    async with dg(gateway).listen.v2.connect(model="flux-general-en", encoding="linear16", sample_rate=str(rate),
                                             eot_threshold="1.0") as conn:
        assert (await conn.recv()).type == "Connected"
        await conn.send_configure({"type": "Configure", "thresholds": {"eot_threshold": 7}})
        fail = await conn.recv()
        assert fail.type == "ConfigureFailure" and fail.description
        await send_pcm(conn, speech("one two three", rate), rate)
        await conn.send_force_end_turn()
        end = None
        while end is None:
            m = await conn.recv()
            if m.type == "TurnInfo" and m.event == "EndOfTurn":
                end = m
        assert end.trigger == "manual" and end.transcript == "One two three"
        await conn.send_close_stream()


# -- 5/6. TTS ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("query", "codec", "rate"), [
    ({}, "mp3", 22050),  # mp3 is the default
    ({"encoding": "linear16"}, "pcm_s16le", 24000),  # a WAV file by default
    ({"encoding": "linear16", "container": "none", "sample_rate": 16000}, None, 16000),
    ({"encoding": "mulaw", "sample_rate": 8000}, "pcm_mulaw", 8000),
    ({"encoding": "alaw", "container": "none", "sample_rate": 8000}, None, 8000),
    ({"encoding": "opus"}, "opus", 48000),
    ({"encoding": "flac", "sample_rate": 16000}, "flac", 16000),
    ({"encoding": "aac"}, "aac", 22050),
    ({"encoding": "mp3", "bit_rate": 32000}, "mp3", 22050),
])
async def test_speak_rest_encodings(gateway: Gateway, query: dict[str, Any], codec: str | None, rate: int) -> None:
    text = "Speak this."
    async with aiohttp.ClientSession() as s, s.post(
        f"{gateway.http}/v1/speak", params={"model": "aura-2-thalia-en", **query}, json={"text": text},
        headers={"Authorization": "Token gsk_test"},
    ) as r:
        assert r.status == 200, await r.text()
        body = await r.read()
        h = r.headers
        assert h["Transfer-Encoding"] == "chunked" and "Content-Length" not in h and h["Date"]
        assert h["dg-model-name"] == "aura-2-thalia-en" and h["dg-model-uuid"] and int(h["dg-char-count"]) == len(text)
        assert h["dg-request-id"] and h["Content-Type"].startswith(("audio/", "application/"))
    if codec is None:
        raw = {"linear16": "s16le", "alaw": "alaw"}[query["encoding"]]
        got = decode(body, raw, rate)
    else:
        got = decode(body)
        assert (got.codec.removesuffix("float"), got.sample_rate) == (codec, rate)
    assert words(got.pcm, got.sample_rate) == ["speak", "this."]


async def test_speak_rest_with_sdk_and_errors(gateway: Gateway) -> None:
    client = dg(gateway)
    audio = b"".join([c async for c in client.speak.v1.audio.generate(text="Hello there.", model="aura-asteria-en")])
    assert decode(audio).codec.startswith("mp3")
    with pytest.raises(ApiError) as e:
        async for _ in client.speak.v1.audio.generate(text="x", model="aura-nobody-en"):
            pass
    assert e.value.status_code == 400
    async with aiohttp.ClientSession() as s:
        for params, body in (({"encoding": "wma"}, {"text": "x"}), ({}, {}), ({}, {"text": 5}),
                             ({"encoding": "mp3", "container": "wav"}, {"text": "x"})):
            async with s.post(f"{gateway.http}/v1/speak", params=params, json=body,
                              headers={"Authorization": "Token gsk_test"}) as r:
                err = await r.json()
                assert r.status == 400 and err["err_msg"] and r.headers["dg-request-id"] == err["request_id"]


async def test_speak_ws_flush_clear_close_with_sdk(gateway: Gateway) -> None:
    rate = 16000
    async with dg(gateway).speak.v1.connect(model="aura-2-thalia-en", encoding="linear16", sample_rate=rate) as conn:
        meta = await conn.recv()
        assert meta.type == "Metadata" and meta.request_id and meta.model_name == "aura-2-thalia-en"
        assert meta.model_uuid and meta.model_version
        segments: list[bytes] = []
        flushed: list[int] = []
        for text in ("First one.", "Second one."):
            for token in text.split():
                await conn.send_text(SpeakV1Text(type="Speak", text=token + " "))
            await conn.send_flush()
            audio = b""
            while True:
                m = await conn.recv()
                if isinstance(m, bytes):
                    audio += m
                    continue
                assert m.type == "Flushed"
                flushed.append(m.sequence_id)
                break
            segments.append(audio)
        assert flushed == [0, 1]
        assert [words(decode(a, "s16le", rate).pcm, rate) for a in segments] == [["first", "one."],
                                                                               ["second", "one."]]
        # Clear drops what is queued: a long text, flushed, then cleared at once
        await conn.send_text(SpeakV1Text(type="Speak", text="This is a long sentence that would take a while. " * 5))
        await conn.send_flush()
        await conn.send_clear()
        await conn._send({"type": "Bogus"})
        seen: list[Any] = []
        while True:
            m = await conn.recv()
            seen.append(m)
            if not isinstance(m, bytes) and m.type == "Warning":
                break
        kinds = [m if isinstance(m, bytes) else m.type for m in seen]
        assert "Cleared" in kinds and "Flushed" not in kinds
        after = kinds[kinds.index("Cleared") + 1 :]
        assert not any(isinstance(k, bytes) for k in after), "audio after Cleared"
        await conn.send_text(SpeakV1Text(type="Speak", text="Last."))
        await conn.send_close()
        rest: list[Any] = []
        async for m in conn:
            rest.append(m)
        assert any(isinstance(m, bytes) for m in rest)


async def test_speak_ws_raw_mulaw_alaw_and_warnings(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as s:
        for enc, fmt in (("mulaw", "mulaw"), ("alaw", "alaw")):
            url = f"{gateway.ws}/v1/speak?model=aura-asteria-en&encoding={enc}&sample_rate=8000"
            async with s.ws_connect(url, headers={"Authorization": "Token gsk_test"}) as ws:
                assert ws._response.headers["dg-request-id"]
                assert (await ws.receive_json())["type"] == "Metadata"
                await ws.send_json({"type": "Speak", "text": "Phone call."})
                await ws.send_json({"type": "Unknown"})
                await ws.send_json({"type": "Flush"})
                audio = b""
                warning = None
                while True:
                    m = await ws.receive()
                    if m.type == aiohttp.WSMsgType.BINARY:
                        audio += m.data
                        continue
                    data = json.loads(m.data)
                    if data["type"] == "Warning":
                        warning = data
                        continue
                    assert data == {"type": "Flushed", "sequence_id": 0}
                    break
                assert warning is not None and {"code", "description", "warn_code", "warn_msg"} <= set(warning)
                assert words(decode(audio, fmt, 8000).pcm, 8000) == ["phone", "call."]
                await ws.send_json({"type": "Close"})
                closing = await ws.receive()
                assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 1000
        async with s.get(f"{gateway.http}/v1/speak?encoding=mp3", headers={"Authorization": "Token gsk_test"}) as r:
            assert r.status == 400 and r.headers["dg-error"]  # the WebSocket only speaks raw audio


# -- 7. startup endpoints ------------------------------------------------------------------------


async def test_projects_and_models(gateway: Gateway) -> None:
    client = dg(gateway)
    projects = await client.manage.v1.projects.list()
    (p,) = projects.projects
    assert p.project_id and p.name
    one = await client.manage.v1.projects.get(p.project_id)
    assert one.project_id == p.project_id
    models = await client.manage.v1.models.list()
    names = [m.name for m in models.tts]
    assert "aura-2-thalia-en" in names and "YTpq7expH9539ERJ" in names  # the table and Gradium's own voices
    assert [m.name for m in models.stt][:2] == ["nova-3", "flux-general-en"]
    thalia = await client.manage.v1.models.get("aura-2-thalia-en")
    assert thalia.name == "aura-2-thalia-en"
    with pytest.raises(ApiError) as e:
        await client.manage.v1.models.get("aura-nobody")
    assert e.value.status_code == 404
