"""PCM from Gradium -> every client output format, streamed in 80 ms and odd-sized chunks."""

from __future__ import annotations

import pytest

from gateway.audio.formats import (
    AAC,
    ALAW,
    FLAC,
    GRADIUM_OUTPUT_FORMATS,
    MP3,
    MULAW,
    OGG,
    OPUS,
    PCM_F32LE,
    PCM_S16LE,
    RAW,
    WAV,
    WEBM,
    AudioFormat,
    nearest_gradium_output,
    pcm16,
)

from .kit import chunk_80ms, pcm_bytes, probe, stream, tone

# (id, target, container to read it back with, expected decoder, duration tolerance (below, above))
LOSSLESS = (0.002, 0.002)
MP3_PAD = (0.01, 0.12)  # encoder delay + padding to whole 1152-sample frames
AAC_PAD = (0.01, 0.12)  # priming samples + padding to whole 1024-sample frames
OPUS_PAD = (0.03, 0.03)

TARGETS = [
    # ElevenLabs output_format families
    ("el-mp3_22050_32", AudioFormat(MP3, RAW, 22050, 1, 32000), "mp3", "mp3", MP3_PAD),
    ("el-mp3_44100_128", AudioFormat(MP3, RAW, 44100, 1, 128000), "mp3", "mp3", MP3_PAD),
    ("el-pcm_16000", pcm16(16000), None, "pcm_s16le", LOSSLESS),
    ("el-pcm_44100", pcm16(44100), None, "pcm_s16le", LOSSLESS),
    ("el-wav_24000", AudioFormat(PCM_S16LE, WAV, 24000), "wav", "pcm_s16le", LOSSLESS),
    ("el-ulaw_8000", AudioFormat(MULAW, RAW, 8000), None, "pcm_mulaw", LOSSLESS),
    ("el-alaw_8000", AudioFormat(ALAW, RAW, 8000), None, "pcm_alaw", LOSSLESS),
    ("el-opus_48000_64", AudioFormat(OPUS, OGG, 48000, 1, 64000), "ogg", "opus", OPUS_PAD),
    # Cartesia raw encodings
    ("ca-pcm_f32le_44100", AudioFormat(PCM_F32LE, RAW, 44100), None, "pcm_f32le", LOSSLESS),
    ("ca-pcm_s16le_8000", pcm16(8000), None, "pcm_s16le", LOSSLESS),
    ("ca-wav_f32le_22050", AudioFormat(PCM_F32LE, WAV, 22050), "wav", "pcm_f32le", LOSSLESS),
    # Deepgram TTS encodings
    ("dg-linear16_24000", pcm16(24000), None, "pcm_s16le", LOSSLESS),
    ("dg-mulaw_wav_8000", AudioFormat(MULAW, WAV, 8000), "wav", "pcm_mulaw", LOSSLESS),
    ("dg-alaw_wav_8000", AudioFormat(ALAW, WAV, 8000), "wav", "pcm_alaw", LOSSLESS),
    ("dg-mp3_22050_48", AudioFormat(MP3, RAW, 22050, 1, 48000), "mp3", "mp3", MP3_PAD),
    ("dg-opus_48000", AudioFormat(OPUS, OGG, 48000), "ogg", "opus", OPUS_PAD),
    ("dg-flac_48000", AudioFormat(FLAC, RAW, 48000), "flac", "flac", LOSSLESS),
    ("dg-aac_22050", AudioFormat(AAC, RAW, 22050), "aac", "aac", AAC_PAD),
    # Other supported targets
    ("opus_webm_48000", AudioFormat(OPUS, WEBM, 48000), "webm", "opus", OPUS_PAD),
    ("opus_ogg_16000", AudioFormat(OPUS, OGG, 16000, 1, 24000), "ogg", "opus", OPUS_PAD),
    ("flac_ogg_16000", AudioFormat(FLAC, OGG, 16000), "ogg", "flac", LOSSLESS),
    ("mp3_8000_stereo", AudioFormat(MP3, RAW, 8000, 2, 32000), "mp3", "mp3", (0.01, 0.3)),
]


def check(
    data: bytes, dst: AudioFormat, container: str | None, codec: str, tol: tuple[float, float], freq: float
) -> None:
    got = probe(data, dst, container)
    assert got.codec.startswith(codec)
    # Opus always decodes at 48 kHz, whatever rate it was encoded from.
    assert got.sample_rate == (48000 if dst.encoding == OPUS else dst.sample_rate)
    assert got.channels == dst.channels
    assert 1.0 - tol[0] <= got.duration <= 1.0 + tol[1], got.duration
    assert got.dominant_hz() == pytest.approx(freq, abs=3)
    assert 0.35 <= got.peak() <= 0.65  # the 0.5-amplitude tone kept its level (no scaling bugs)


@pytest.mark.parametrize(("name", "dst", "container", "codec", "tol"), TARGETS, ids=[t[0] for t in TARGETS])
@pytest.mark.parametrize("chunking", ["80ms", "1001B"])
def test_pcm48k_to_target(
    name: str, dst: AudioFormat, container: str | None, codec: str, tol: tuple[float, float], chunking: str
) -> None:
    src = pcm16(48000)
    freq = 1000.0 if dst.sample_rate == 8000 else 440.0
    data = pcm_bytes(tone(48000, freq))
    out = stream(src, dst, data, chunk_80ms(src) if chunking == "80ms" else 1001)
    assert not out.transcoder.passthrough
    check(out.data, dst, container, codec, tol, freq)


@pytest.mark.parametrize(("name", "dst", "container", "codec", "tol"), TARGETS, ids=[t[0] for t in TARGETS])
def test_from_nearest_gradium_format(
    name: str, dst: AudioFormat, container: str | None, codec: str, tol: tuple[float, float]
) -> None:
    """What the gateway really does: ask Gradium for the nearest format, convert the rest."""
    src = GRADIUM_OUTPUT_FORMATS[nearest_gradium_output(dst)]
    if src.container != RAW:
        pytest.skip("Gradium serves this one as is (covered by the passthrough tests)")
    freq = 1000.0
    data = pcm_bytes(tone(src.sample_rate, freq))
    out = stream(src, dst, data, chunk_80ms(src))
    if dst.same_bytes_as(src):
        assert out.transcoder.passthrough
        assert out.data == data
        return
    check(out.data, dst, container, codec, tol, freq)


def test_f32_source_to_s16_and_back() -> None:
    """Cartesia pcm_f32le in either direction keeps level and pitch."""
    f32 = AudioFormat(PCM_F32LE, RAW, 44100)
    x = tone(44100, 1000.0)
    out = stream(f32, pcm16(16000), pcm_bytes(x, PCM_F32LE), 1001)
    check(out.data, pcm16(16000), None, "pcm_s16le", LOSSLESS, 1000.0)
    back = stream(pcm16(16000), f32, out.data, 999)
    check(back.data, f32, None, "pcm_f32le", (0.003, 0.003), 1000.0)


def test_stereo_target_from_mono_source() -> None:
    dst = AudioFormat(PCM_S16LE, WAV, 24000, 2)
    out = stream(pcm16(24000), dst, pcm_bytes(tone(24000)), 1001)
    check(out.data, dst, "wav", "pcm_s16le", LOSSLESS, 440.0)
