"""Every Gradium output and input format, and the tone round trip through real transcodes.

Outputs are decoded with PyAV directly (not with the code under test); inputs are produced with
PyAV; the transcode round trips use the gateway's audio layer, exactly as the gateway would.
"""

from __future__ import annotations

import base64
import io

import av
import numpy as np
import pytest

from gateway.audio.formats import GRADIUM_INPUT_FORMATS, GRADIUM_OUTPUT_FORMATS, MP3, OGG, OPUS, RAW, AudioFormat, pcm16
from gateway.audio.transcode import make_transcoder
from gateway.emulator import tone_decoder, tones

from .conftest import API_KEY, Emulator
from .helpers import audio_bytes, decode_with_pyav, drain, expected, of_type

TEXT = "Formats keep every word, even double letters: bookkeeper. Right?"
EMMA = "YTpq7expH9539ERJ"

# How PyAV reads each output (headerless formats need the demuxer named and the rate given).
RAW_DEMUXERS = {"pcm_s16le": "s16le", "pcm_mulaw": "mulaw", "pcm_alaw": "alaw"}


def pyav_decode_output(name: str, data: bytes) -> np.ndarray:
    fmt = GRADIUM_OUTPUT_FORMATS[name]
    if fmt.container != RAW:
        return decode_with_pyav(data)
    options = {"sample_rate": str(fmt.sample_rate), "ch_layout": "mono"}
    resampler = av.AudioResampler(format="s16", layout="mono", rate=24000)
    out = []
    with av.open(io.BytesIO(data), format=RAW_DEMUXERS[fmt.encoding], options=options) as container:
        for frame in container.decode(audio=0):
            out.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
    out.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    return np.concatenate(out)


@pytest.mark.parametrize("name", sorted(GRADIUM_OUTPUT_FORMATS))
async def test_every_output_format_decodes(emulator: Emulator, name: str) -> None:
    async with emulator.ws("tts") as ws:
        await ws.send_json({"type": "setup", "voice_id": EMMA, "output_format": name})
        await ws.send_json({"type": "text", "text": TEXT})
        await ws.send_json({"type": "end_of_stream"})
        msgs = await drain(ws)
    fmt = GRADIUM_OUTPUT_FORMATS[name]
    ready = msgs[0]
    assert ready["sample_rate"] == fmt.sample_rate
    assert ready["frame_size"] == round(fmt.sample_rate * 0.08)
    data = audio_bytes(msgs)
    if name == "wav":
        assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    if name == "opus":
        assert data[:4] == b"OggS"
    assert tone_decoder.transcribe(pyav_decode_output(name, data), 24000) == expected(TEXT)
    stops = [m["stop_s"] for m in of_type(msgs, "audio")]
    assert stops == sorted(stops)


@pytest.mark.parametrize(
    ("name", "mime"),
    [
        ("wav", "audio/wav"),
        ("opus", "audio/ogg"),
        ("pcm", "audio/pcm"),
        ("pcm_16000", "audio/pcm"),
        ("ulaw_8000", "audio/basic"),
        ("alaw_8000", "audio/x-alaw-basic"),
    ],
)
async def test_rest_only_audio_content_types(emulator: Emulator, name: str, mime: str) -> None:
    body = {"text": "content types", "voice_id": EMMA, "output_format": name, "only_audio": True}
    headers = {"x-api-key": API_KEY}
    async with emulator.http.post(f"{emulator.api}post/speech/tts", json=body, headers=headers) as resp:
        assert resp.status == 200
        assert resp.content_type == mime
        data = await resp.read()
    assert tone_decoder.transcribe(pyav_decode_output(name, data), 24000) == "content types"


def pyav_encode(pcm: np.ndarray, rate: int, fmt: str, codec: str) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buf.getvalue()


def input_bytes(name: str) -> bytes:
    fmt = GRADIUM_INPUT_FORMATS[name]
    if name == "wav":
        pcm, _ = tones.synthesize(TEXT, 44100)  # the header, not the format name, gives the rate
        return pyav_encode(pcm, 44100, "wav", "pcm_s16le")
    if name == "opus":
        pcm, _ = tones.synthesize(TEXT, 48000)
        return pyav_encode(pcm, 48000, "ogg", "libopus")
    pcm, _ = tones.synthesize(TEXT, fmt.sample_rate)
    if fmt.encoding == "pcm_s16le":
        return pcm.tobytes()
    return pyav_encode(pcm, 8000, RAW_DEMUXERS[fmt.encoding], fmt.encoding)


async def stt_words(emulator: Emulator, input_format: str, data: bytes, chunk: int = 4096) -> str:
    async with emulator.ws("asr") as ws:
        await ws.send_json({"type": "setup", "input_format": input_format})
        for i in range(0, len(data), chunk):
            await ws.send_json({"type": "audio", "audio": base64.b64encode(data[i : i + chunk]).decode()})
        await ws.send_json({"type": "end_of_stream"})
        msgs = await drain(ws)
    assert msgs[-1]["type"] == "end_of_stream", msgs[-1]
    return " ".join(m["text"] for m in of_type(msgs, "text"))


@pytest.mark.parametrize("name", sorted(GRADIUM_INPUT_FORMATS))
async def test_every_input_format_transcribes(emulator: Emulator, name: str) -> None:
    # 4095: odd, so samples and container pages straddle messages.
    assert await stt_words(emulator, name, input_bytes(name), chunk=4095) == expected(TEXT)


async def test_invalid_input_audio_is_an_error_frame(emulator: Emulator) -> None:
    async with emulator.ws("asr") as ws:
        await ws.send_json({"type": "setup", "input_format": "opus"})
        await ws.send_json({"type": "audio", "audio": base64.b64encode(b"not an ogg stream" * 300).decode()})
        await ws.send_json({"type": "end_of_stream"})
        msgs = await drain(ws)
    assert msgs[-1]["type"] == "error" and msgs[-1]["code"] == 1003
    assert ws.close_code == 1003


# -- the tone round trip through the gateway's own transcoders -----------------------------------


def transcode(data: bytes, src: AudioFormat, dst: AudioFormat, chunk: int) -> bytes:
    t = make_transcoder(src, dst)
    out = [t.feed(data[i : i + chunk]) for i in range(0, len(data), chunk)]
    return b"".join(out) + t.flush()


async def tts_pcm48(emulator: Emulator) -> bytes:
    result = await emulator.sdk().tts({"voice_id": EMMA, "output_format": "pcm"}, TEXT)
    return result.raw_data


MP3_22K_32K = AudioFormat(MP3, RAW, 22050, bit_rate=32000)


async def test_round_trip_through_mp3_22k_32kbps(emulator: Emulator) -> None:
    mp3 = transcode(await tts_pcm48(emulator), pcm16(48000), MP3_22K_32K, chunk=3001)
    assert mp3[:3] == b"ID3" or mp3[0] == 0xFF  # an mp3 stream, not PCM
    back = transcode(mp3, MP3_22K_32K, pcm16(24000), chunk=999)
    assert await stt_words(emulator, "pcm", back, chunk=3333) == expected(TEXT)


async def test_round_trip_through_ulaw_8k(emulator: Emulator) -> None:
    ulaw = transcode(await tts_pcm48(emulator), pcm16(48000), GRADIUM_INPUT_FORMATS["ulaw_8000"], chunk=7681)
    assert await stt_words(emulator, "ulaw_8000", ulaw, chunk=641) == expected(TEXT)


@pytest.mark.parametrize("bit_rate", [None, 16000])
async def test_round_trip_through_opus(emulator: Emulator, bit_rate: int | None) -> None:
    dst = AudioFormat(OPUS, OGG, 48000, bit_rate=bit_rate)
    ogg = transcode(await tts_pcm48(emulator), pcm16(48000), dst, chunk=5000)
    assert ogg[:4] == b"OggS"
    assert await stt_words(emulator, "opus", ogg, chunk=1001) == expected(TEXT)


async def test_round_trip_through_resample_chain(emulator: Emulator) -> None:
    pcm16k = transcode(await tts_pcm48(emulator), pcm16(48000), pcm16(16000), chunk=7)
    pcm24k = transcode(pcm16k, pcm16(16000), pcm16(24000), chunk=317)
    assert len(pcm24k) // 2 == pytest.approx(len(pcm16k) // 2 * 1.5, rel=0.01)
    assert await stt_words(emulator, "pcm", pcm24k, chunk=33) == expected(TEXT)


async def test_round_trip_wav_output_to_wav_input(emulator: Emulator) -> None:
    wav = (await emulator.sdk().tts({"voice_id": EMMA}, TEXT)).raw_data  # streaming header, sizes unknown
    assert await stt_words(emulator, "wav", wav) == expected(TEXT)
