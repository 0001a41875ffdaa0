"""Client audio in every container/codec we accept -> Gradium PCM, declared or sniffed, in chunks."""

from __future__ import annotations

from functools import cache

import pytest

from gateway.audio.formats import (
    AAC,
    ALAW,
    FLAC,
    MP3,
    MP4,
    MULAW,
    OGG,
    OPUS,
    PCM_S16LE,
    RAW,
    VORBIS,
    WAV,
    WEBM,
    AudioFormat,
    pcm16,
)

from .kit import encode_file, probe, stream

# Small Ogg pages, like a live encoder sends (FFmpeg's default is one page per second).
OGG_LIVE = {"page_duration": "20000"}


@cache
def fixture(name: str) -> bytes:
    """Inputs produced by FFmpeg's encoders and muxers, so they are independent of our code."""
    makers = {
        "wav": lambda: encode_file("wav", "pcm_s16le", 16000, freq=1000),
        "mulaw_raw": lambda: encode_file("mulaw", "pcm_mulaw", 8000, freq=1000),
        "alaw_raw": lambda: encode_file("alaw", "pcm_alaw", 8000, freq=1000),
        "linear16_raw": lambda: encode_file("s16le", "pcm_s16le", 16000, freq=1000),
        "ogg_opus": lambda: encode_file("ogg", "libopus", 48000, bit_rate=48000, options=OGG_LIVE),
        "ogg_opus_stereo": lambda: encode_file("ogg", "libopus", 48000, 2, bit_rate=64000, options=OGG_LIVE),
        "ogg_vorbis": lambda: encode_file("ogg", "vorbis", 44100, 2, options=OGG_LIVE),
        "ogg_flac": lambda: encode_file("ogg", "flac", 16000, options=OGG_LIVE),
        "webm_opus": lambda: encode_file("webm", "libopus", 48000, bit_rate=48000, options={"live": "1"}),
        "webm_vorbis": lambda: encode_file("webm", "vorbis", 44100, 2),
        "mp3": lambda: encode_file("mp3", "libmp3lame", 44100, bit_rate=128000),
        "mp3_stereo_22050": lambda: encode_file("mp3", "libmp3lame", 22050, 2, bit_rate=64000),
        "aac_adts": lambda: encode_file("adts", "aac", 24000, bit_rate=64000),
        "flac": lambda: encode_file("flac", "flac", 16000),
        "flac_48000": lambda: encode_file("flac", "flac", 48000, freq=1000),
        "m4a": lambda: encode_file("mp4", "aac", 24000, bit_rate=64000),
        "m4a_fragmented_stereo": lambda: encode_file(
            "mp4", "aac", 44100, 2, bit_rate=96000, options={"movflags": "frag_keyframe+empty_moov"}
        ),
    }
    return makers[name]()


# (fixture, declared format, expected tone, (duration tolerance below, above), decodes progressively)
CASES = [
    ("wav", AudioFormat(PCM_S16LE, WAV, 16000), 1000, (0.002, 0.002), True),
    ("mulaw_raw", AudioFormat(MULAW, RAW, 8000), 1000, (0.002, 0.002), True),
    ("alaw_raw", AudioFormat(ALAW, RAW, 8000), 1000, (0.002, 0.002), True),
    ("linear16_raw", pcm16(16000), 1000, (0.002, 0.002), True),
    ("ogg_opus", AudioFormat(OPUS, OGG, 48000), 440, (0.01, 0.03), True),
    ("ogg_opus_stereo", AudioFormat(OPUS, OGG, 48000, 2), 440, (0.01, 0.03), True),
    ("ogg_vorbis", AudioFormat(VORBIS, OGG, 44100, 2), 440, (0.01, 0.05), True),
    ("ogg_flac", AudioFormat(FLAC, OGG, 16000), 440, (0.002, 0.002), True),
    ("webm_opus", AudioFormat(OPUS, WEBM, 48000), 440, (0.01, 0.03), True),
    ("webm_vorbis", AudioFormat(VORBIS, WEBM, 44100, 2), 440, (0.01, 0.05), True),
    ("mp3", AudioFormat(MP3, RAW, 44100), 440, (0.01, 0.08), True),
    ("mp3_stereo_22050", AudioFormat(MP3, RAW, 22050, 2), 440, (0.01, 0.12), True),
    ("aac_adts", AudioFormat(AAC, RAW, 24000), 440, (0.01, 0.12), True),
    ("flac", AudioFormat(FLAC, RAW, 16000), 440, (0.002, 0.002), True),
    ("flac_48000", AudioFormat(FLAC, RAW, 48000), 1000, (0.002, 0.002), True),
    ("m4a", AudioFormat(AAC, MP4, 24000), 440, (0.01, 0.08), False),
    ("m4a_fragmented_stereo", AudioFormat(AAC, MP4, 44100, 2), 440, (0.01, 0.08), False),
]
IDS = [c[0] for c in CASES]


def _check(out: bytes, dst: AudioFormat, freq: float, tol: tuple[float, float]) -> None:
    got = probe(out, dst)
    assert got.sample_rate == dst.sample_rate
    assert 1.0 - tol[0] <= got.duration <= 1.0 + tol[1], got.duration
    assert got.dominant_hz() == pytest.approx(freq, abs=3)
    assert 0.35 <= got.peak() <= 0.65


@pytest.mark.parametrize(("name", "src", "freq", "tol", "progressive"), CASES, ids=IDS)
@pytest.mark.parametrize("declared", [True, False], ids=["declared", "sniffed"])
def test_decode_to_gradium_pcm(
    name: str, src: AudioFormat, freq: int, tol: tuple[float, float], progressive: bool, declared: bool
) -> None:
    if not declared and src.container == RAW and src.encoding in (PCM_S16LE, MULAW, ALAW):
        pytest.skip("headerless PCM cannot be sniffed")
    data = fixture(name)
    dst = pcm16(24000)
    out = stream(src if declared else None, dst, data, 1001)
    _check(out.data, dst, freq, tol)
    feeds = len(out.outputs) - 1
    if progressive and feeds > 4:
        # Audio comes out while the input streams in, not at flush.
        assert out.feeds_with_output >= feeds // 3, (out.feeds_with_output, feeds)
        assert len(out.outputs[-1]) < len(out.data) // 4


@pytest.mark.parametrize("name", ["ogg_opus", "webm_opus", "mp3", "aac_adts", "flac", "wav"])
def test_decode_in_small_chunks_to_8k_mulaw(name: str) -> None:
    """Tiny chunks split every header and frame; the telephone target resamples too."""
    src = dict((c[0], c[1]) for c in CASES)[name]
    dst = AudioFormat(MULAW, RAW, 8000)
    out = stream(src, dst, fixture(name), 97)
    freq = dict((c[0], c[2]) for c in CASES)[name]
    got = probe(out.data, dst)
    assert got.duration == pytest.approx(1.0, abs=0.12)
    assert got.dominant_hz() == pytest.approx(freq, abs=3)


@pytest.mark.parametrize("name", ["ogg_opus", "webm_opus", "mp3", "flac", "m4a"])
def test_decode_to_compressed_target(name: str) -> None:
    """Container in, codec out (e.g. a browser recording re-encoded as mp3)."""
    src = dict((c[0], c[1]) for c in CASES)[name]
    dst = AudioFormat(MP3, RAW, 16000, 1, 32000)
    out = stream(src, dst, fixture(name), 4096)
    got = probe(out.data, dst, "mp3")
    assert got.sample_rate == 16000
    assert got.dominant_hz() == pytest.approx(440, abs=3)
