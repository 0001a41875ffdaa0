"""The official `elevenlabs` SDK against the rest of the ElevenLabs surface (base URL changed, nothing else):
catalogue and account, single-use tokens, speech to text (REST and realtime), text to dialogue and the
multi-context socket."""

from __future__ import annotations

import asyncio
import base64
import io
from typing import Any

import numpy as np
import orjson
import pytest
import websockets
from elevenlabs import DialogueInput
from elevenlabs.client import AsyncElevenLabs
from elevenlabs.core.api_error import ApiError
from elevenlabs.realtime import AudioFormat, CommitStrategy, RealtimeEvents

from gateway import custom_ids
from gateway.audio import g711
from gateway.audio.formats import MULAW
from gateway.emulator.stats import STATS
from tests.audiocheck import decode, expected_words, speech, wav_bytes, words
from tests.conftest import Gateway

RACHEL = "21m00Tcm4TlvDq8ikWAM"  # -> Emma
GEORGE = "JBFqnCBsd6RMkjVDRZzb"  # -> Jack
EMMA, JACK = "YTpq7expH9539ERJ", "m86j6D7UZpGzHsNu"
KEY = "gsk_test"


def client(gw: Gateway, key: str | None = KEY) -> AsyncElevenLabs:
    return AsyncElevenLabs(api_key=key, base_url=gw.http)


async def collect(stream: Any) -> bytes:
    return b"".join([chunk async for chunk in stream])


# -- catalogue and account ------------------------------------------------------------------------


async def test_voices_models_user_subscription(gateway: Gateway) -> None:
    el = client(gateway)
    voices = (await el.voices.get_all()).voices
    by_id = {v.voice_id: v for v in voices}
    assert by_id[RACHEL].name == "Rachel" and by_id[RACHEL].category == "premade"
    assert by_id[RACHEL].labels["gender"] == "female"
    # Gradium's own voices are listed too, under ids every TTS route accepts; the org's clone is `cloned`,
    # under the id sealed for this caller (gateway/custom_ids.py), never its raw Gradium uid
    clone = custom_ids.encode("voice", "emuClone00000001", caller=custom_ids.Caller(KEY))
    assert by_id[EMMA].name == "Emma" and by_id[clone].category == "cloned"
    assert "emuClone00000001" not in by_id
    assert all(v.voice_id and v.name and v.category for v in voices)

    page = await el.voices.search(page_size=5)
    assert len(page.voices) == 5 and page.has_more and page.total_count == len(voices)
    rest = await el.voices.search(page_size=100, next_page_token=page.next_page_token)
    assert not rest.has_more and len(page.voices) + len(rest.voices) == len(voices)
    found = await el.voices.search(search="georg")
    assert [v.voice_id for v in found.voices] == [GEORGE]

    assert (await el.voices.get(GEORGE)).name == "George"
    assert (await el.voices.get(JACK)).name == "Jack"
    settings = await el.voices.settings.get(RACHEL)
    assert settings.stability == 0.5 and settings.similarity_boost == 0.75
    assert (await el.voices.settings.get_default()).speed == 1.0

    models = await el.models.list()
    flash = next(m for m in models if m.model_id == "eleven_flash_v2_5")
    assert flash.can_do_text_to_speech and {"language_id": "fr", "name": "French"} in [
        lang.dict() for lang in flash.languages or []]

    user = await el.user.get()
    sub = await el.user.subscription.get()
    # the emulator's credits: 1,000,000 allocated, nothing used yet
    assert user.subscription.character_limit == sub.character_limit == 1_000_000
    assert sub.character_count == 0 and sub.status == "active" and sub.next_character_count_reset_unix


async def test_catalogue_errors(gateway: Gateway) -> None:
    with pytest.raises(ApiError) as e:
        await client(gateway).voices.get("no-such-voice")
    assert e.value.status_code == 400 and e.value.body["detail"]["code"] == "voice_not_found"
    with pytest.raises(ApiError) as e:
        await client(gateway, key="revoked_key_1").voices.get_all()
    assert e.value.status_code == 401 and "revoked_key_1" not in orjson.dumps(e.value.body).decode()
    with pytest.raises(ApiError) as e:
        await client(gateway).voices.search(next_page_token="abc")
    assert e.value.status_code == 422


# -- single-use tokens ----------------------------------------------------------------------------


async def test_single_use_token_opens_the_socket_it_was_minted_for_once(gateway: Gateway) -> None:
    el = client(gateway)
    token = (await el.tokens.single_use.create("tts_websocket")).token
    assert token and KEY not in token
    url = f"{gateway.ws}/v1/text-to-speech/{RACHEL}/stream-input?output_format=pcm_16000&single_use_token={token}"
    async with websockets.connect(url) as ws:
        for m in ({"text": " "}, {"text": "Hi there. "}, {"text": ""}):
            await ws.send(orjson.dumps(m).decode())
        msgs = [orjson.loads(m) async for m in ws]
    assert msgs[-1] == {"isFinal": True} and any(m.get("audio") for m in msgs)
    assert gateway.emulator.app[STATS].setups[-1]["key_id"]  # Gradium saw the minter's key
    async with websockets.connect(url) as ws:  # used up
        await ws.send('{"text": " "}')
        err = orjson.loads(await ws.recv())
        assert err["error"] == "invalid_api_key" and err["code"] == 1008
    # a token for another route does not open this one
    other = (await el.tokens.single_use.create("realtime_scribe")).token
    async with websockets.connect(url.replace(token, other)) as ws:
        await ws.send('{"text": " "}')
        assert orjson.loads(await ws.recv())["error"] == "invalid_api_key"
    with pytest.raises(ApiError) as e:
        await el.tokens.single_use.create("everything")  # type: ignore[arg-type]
    assert e.value.status_code == 422


# -- speech to text -------------------------------------------------------------------------------


async def test_speech_to_text_convert(gateway: Gateway) -> None:
    text = "Hello world. Testing the gateway."
    r = await client(gateway).speech_to_text.convert(
        model_id="scribe_v1", file=("audio.wav", io.BytesIO(wav_bytes(text, 16000)), "audio/x-wav"),
        language_code="en", tag_audio_events=True, diarize=True, keyterms=["gateway", "Gradium AI"])
    assert [w.text.lower() for w in r.words if w.type == "word"] == expected_words(text)
    assert r.text == "Hello world. Testing the gateway."
    assert r.language_code == "eng" and r.words[1].type == "spacing"
    first, last = r.words[0], r.words[-1]
    assert 0 <= first.start < first.end <= last.start < last.end
    assert first.speaker_id == "speaker_0" and first.logprob is not None
    setup = gateway.emulator.app[STATS].setups[-1]["setup"]
    assert setup["json_config"]["keywords"]["words"] == ["gateway", "Gradium", "AI"]


async def test_speech_to_text_mp3_and_raw_pcm(gateway: Gateway) -> None:
    text = "Compressed audio works"
    mp3 = await collect(client(gateway).text_to_speech.convert(RACHEL, text=text, output_format="mp3_22050_32"))
    r = await client(gateway).speech_to_text.convert(model_id="scribe_v2", file=("clip.mp3", mp3, "audio/mpeg"),
                                                    timestamps_granularity="character")
    assert [w.text.lower() for w in r.words if w.type == "word"] == expected_words(text)
    assert "".join(c.text for c in r.words[0].characters or []) == r.words[0].text
    r = await client(gateway).speech_to_text.convert(model_id="scribe_v1", file_format="pcm_s16le_16",
                                                    file=("raw.pcm", speech("raw pcm", 16000)))
    assert [w.text.lower() for w in r.words if w.type == "word"] == ["raw", "pcm"]


async def test_speech_to_text_with_single_use_token(gateway: Gateway) -> None:
    token = (await client(gateway).tokens.single_use.create("batch_scribe")).token
    import aiohttp

    form = aiohttp.FormData()
    form.add_field("file", wav_bytes("token works", 16000), filename="a.wav", content_type="audio/wav")
    form.add_field("model_id", "scribe_v1")
    async with aiohttp.ClientSession() as s, s.post(f"{gateway.http}/v1/speech-to-text?token={token}",
                                                    data=form) as r:
        body = await r.json()
    assert r.status == 200 and body["text"].lower().startswith("token")


# -- realtime speech to text ----------------------------------------------------------------------


async def _realtime(gw: Gateway, options: dict[str, Any], chunks: list[bytes], *, commit: bool,
                    key: str | None = KEY, base: str | None = None, want: int = 1) -> list[tuple[str, dict[str, Any]]]:
    el = AsyncElevenLabs(api_key=key, base_url=base or gw.http)
    got: list[tuple[str, dict[str, Any]]] = []
    done = asyncio.Event()
    conn = await el.speech_to_text.realtime.connect(options)  # type: ignore[arg-type]
    for ev in ("session_started", "partial_transcript", "committed_transcript",
               "committed_transcript_with_timestamps", "error", "input_error", "auth_error"):
        conn.on(ev, lambda data, ev=ev: got.append((ev, data)))
    conn.on(RealtimeEvents.CLOSE, lambda *_: done.set())
    for chunk in chunks:
        await conn.send({"audio_base_64": base64.b64encode(chunk).decode()})
    if commit:
        await conn.commit()
    final = "committed_transcript_with_timestamps" if options.get("include_timestamps") else "committed_transcript"
    for _ in range(200):
        if sum(ev == final for ev, _ in got) >= want or done.is_set():
            break
        await asyncio.sleep(0.02)
    await conn.close()
    return got


def _chunks(pcm: bytes, size: int = 3200) -> list[bytes]:
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


async def test_realtime_manual_commit_with_timestamps(gateway: Gateway) -> None:
    text = "Realtime scribe works"
    got = await _realtime(gateway, {"model_id": "scribe_v2_realtime", "audio_format": AudioFormat.PCM_16000,
                                    "sample_rate": 16000, "include_timestamps": True, "language_code": "en"},
                          _chunks(speech(text, 16000)), commit=True)
    kinds = [ev for ev, _ in got]
    assert kinds[0] == "session_started" and got[0][1]["config"]["commit_strategy"] == "manual"
    assert "partial_transcript" in kinds
    plain = next(d for ev, d in got if ev == "committed_transcript")
    stamped = next(d for ev, d in got if ev == "committed_transcript_with_timestamps")
    assert kinds.index("committed_transcript") < kinds.index("committed_transcript_with_timestamps")
    assert plain["text"] == stamped["text"] and stamped["text"].lower().split() == expected_words(text)
    ws = stamped["words"]
    assert [w["type"] for w in ws] == ["word", "spacing", "word", "spacing", "word"]
    assert stamped["language_code"] == "eng" and ws[0]["start"] < ws[-1]["end"]


async def test_realtime_vad_commits_ulaw_over_tls(gateway: Gateway, trust_test_ca: Any) -> None:
    # two utterances with a pause: Gradium's semantic VAD commits each one, no client commit
    pcm = speech("First turn.", 8000) + b"\x00" * 16000 + speech("Second turn.", 8000) + b"\x00" * 16000
    ulaw = g711.encode(MULAW, np.frombuffer(pcm, "<i2")).tobytes()
    got = await _realtime(gateway, {"model_id": "scribe_v2_realtime", "audio_format": AudioFormat.ULAW_8000,
                                    "sample_rate": 8000, "commit_strategy": CommitStrategy.VAD,
                                    "vad_silence_threshold_secs": 0.5},
                          _chunks(ulaw, 800), commit=False, base=gateway.https, want=2)
    commits = [d["text"] for ev, d in got if ev == "committed_transcript"]
    assert [c.lower().strip(".") for c in commits[:2]] == ["first turn", "second turn"]


# -- text to dialogue -----------------------------------------------------------------------------


async def test_text_to_dialogue_each_input_its_own_voice_in_order(gateway: Gateway) -> None:
    inputs = [DialogueInput(text="Hello there.", voice_id=RACHEL),
              DialogueInput(text="General Kenobi.", voice_id=GEORGE)]
    el = client(gateway)
    audio = await collect(el.text_to_dialogue.convert(inputs=inputs, model_id="eleven_v3", output_format="pcm_24000"))
    d = decode(audio, "s16le", 24000)
    assert words(d.pcm, 24000) == expected_words("Hello there. General Kenobi.")
    voices = [s["setup"]["voice_id"] for s in list(gateway.emulator.app[STATS].setups)[-2:]]
    assert voices == [EMMA, JACK]

    r = await el.text_to_dialogue.convert_with_timestamps(inputs=inputs, output_format="mp3_44100_128")
    assert "".join(r.alignment.characters) == "Hello there. General Kenobi."
    first, second = r.voice_segments
    assert (first.voice_id, second.voice_id) == (RACHEL, GEORGE)
    assert (first.dialogue_input_index, second.dialogue_input_index) == (0, 1)
    assert first.start_time_seconds == 0 and first.end_time_seconds == second.start_time_seconds
    chars = r.alignment.characters
    assert "".join(chars[second.character_start_index : second.character_end_index]) == "General Kenobi."
    starts = r.alignment.character_start_times_seconds
    assert starts == sorted(starts)  # times run on across the two Gradium requests

    lines = [c async for c in el.text_to_dialogue.stream_with_timestamps(inputs=inputs, output_format="pcm_16000")]
    pcm = b"".join(base64.b64decode(c.audio_base_64) for c in lines)
    assert words(decode(pcm, "s16le", 16000).pcm, 16000) == expected_words("Hello there. General Kenobi.")
    assert {s.voice_id for c in lines for s in c.voice_segments} == {RACHEL, GEORGE}


async def test_text_to_dialogue_errors(gateway: Gateway) -> None:
    el = client(gateway)
    with pytest.raises(ApiError) as e:
        await collect(el.text_to_dialogue.stream(inputs=[DialogueInput(text="Hi.", voice_id="nope")]))
    assert e.value.status_code == 400 and e.value.body["detail"]["code"] == "voice_not_found"
    with pytest.raises(ApiError) as e:
        await collect(el.text_to_dialogue.stream(inputs=[]))
    assert e.value.status_code == 422


async def test_realtime_with_a_single_use_token(gateway: Gateway) -> None:
    token = (await client(gateway).tokens.single_use.create("realtime_scribe")).token
    got = await _realtime(gateway, {"model_id": "scribe_v2_realtime", "audio_format": AudioFormat.PCM_16000,
                                    "sample_rate": 16000, "token": token},
                          _chunks(speech("Token session", 16000)), commit=True, key=None)
    assert [d["text"] for ev, d in got if ev == "committed_transcript"] == ["Token session"]


def _flac(pcm: bytes, rate: int) -> bytes:
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="flac") as out:
        stream = out.add_stream("flac", rate=rate)
        stream.layout = "mono"  # type: ignore[attr-defined]
        frame = av.AudioFrame.from_ndarray(np.frombuffer(pcm, "<i2").reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):  # type: ignore[attr-defined]
            out.mux(packet)
        for packet in stream.encode(None):  # type: ignore[attr-defined]
            out.mux(packet)
    return buf.getvalue()


@pytest.mark.parametrize("container", ["ogg_opus", "flac"])
async def test_speech_to_text_other_containers(gateway: Gateway, container: str) -> None:
    text = "Any container"
    if container == "flac":
        data, name = _flac(speech(text, 16000), 16000), "clip.flac"
    else:
        data = await collect(client(gateway).text_to_speech.convert(RACHEL, text=text, output_format="opus_48000_64"))
        name = "clip.ogg"
    r = await client(gateway).speech_to_text.convert(model_id="scribe_v1", file=(name, data))
    assert [w.text.lower() for w in r.words if w.type == "word"] == expected_words(text)
