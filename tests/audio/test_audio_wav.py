"""WAV in and out: streaming headers, progressive parsing, every sample layout we accept."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from gateway.audio.base import AudioError
from gateway.audio.formats import ALAW, MULAW, PCM_F32LE, PCM_S16LE, RAW, WAV, AudioFormat, pcm16
from gateway.audio.transcode import make_transcoder
from gateway.audio.wav import UNKNOWN_SIZE, WavReader, wav_header

from .kit import encode_file, pcm_bytes, probe, stream, tone


def _fmt_chunk(tag: int, channels: int, rate: int, bits: int) -> bytes:
    align = channels * bits // 8
    body = struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)
    return b"fmt " + struct.pack("<I", len(body)) + body


def _wav(
    payload: bytes,
    data_size: int,
    *,
    extra_before: bytes = b"",
    extra_after: bytes = b"",
    tag: int = 1,
    rate: int = 16000,
    bits: int = 16,
) -> bytes:
    body = b"WAVE" + _fmt_chunk(tag, 1, rate, bits) + extra_before + b"data" + struct.pack("<I", data_size)
    return b"RIFF" + struct.pack("<I", UNKNOWN_SIZE) + body + payload + extra_after


def _read_all(wav: bytes, size: int) -> bytes:
    reader = WavReader()
    return b"".join(reader.feed(wav[i : i + size]) for i in range(0, len(wav), size))


@pytest.mark.parametrize("encoding", [PCM_S16LE, PCM_F32LE, MULAW, ALAW])
def test_streaming_header_is_read_by_ffmpeg(encoding: str) -> None:
    dst = AudioFormat(encoding, WAV, 8000)
    out = stream(pcm16(8000), dst, pcm_bytes(tone(8000, 1000.0)), 1600)
    assert out.outputs[0].startswith(b"RIFF\xff\xff\xff\xffWAVE")
    assert out.outputs[0][-len(b"data\xff\xff\xff\xff") - 1600 // 2 * dst.bytes_per_sample :].startswith(b"data")
    got = probe(out.data, container="wav")
    assert got.codec == encoding
    assert got.duration == pytest.approx(1.0, abs=0.001)
    assert got.dominant_hz() == pytest.approx(1000, abs=2)


def test_empty_stream_still_gets_a_header() -> None:
    tc = make_transcoder(pcm16(24000), AudioFormat(PCM_S16LE, WAV, 16000))
    assert tc.flush() == wav_header(PCM_S16LE, 16000, 1)


def test_header_split_at_every_byte() -> None:
    payload = pcm_bytes(tone(16000, 1000.0, 0.05))
    wav = _wav(payload, len(payload), extra_before=b"LIST\x05\x00\x00\x00abcde\x00")
    assert _read_all(wav, 1) == payload


@pytest.mark.parametrize("size", [0, UNKNOWN_SIZE])
def test_unknown_data_size_reads_to_the_end(size: int) -> None:
    payload = pcm_bytes(tone(16000, 1000.0, 0.1))
    wav = _wav(payload, size)
    assert _read_all(wav, 333) == payload


def test_trailing_chunks_after_data_are_not_audio() -> None:
    payload = pcm_bytes(tone(16000, 1000.0, 0.1))
    wav = _wav(payload, len(payload), extra_after=b"LIST\x04\x00\x00\x00INFO" + b"id3 \x02\x00\x00\x00xy")
    assert _read_all(wav, 100) == payload


def test_back_to_back_wav_files() -> None:
    a, b = pcm_bytes(tone(16000, 1000.0, 0.1)), pcm_bytes(tone(16000, 1000.0, 0.05))
    wav = _wav(a, len(a)) + _wav(b, len(b))
    assert _read_all(wav, 77) == a + b


def test_wav_to_raw_same_layout_only_strips_the_header() -> None:
    payload = pcm_bytes(tone(16000, 1000.0, 0.2))
    wav = _wav(payload, len(payload))
    out = stream(AudioFormat(PCM_S16LE, WAV, 16000), pcm16(16000), wav, 1001)
    assert out.data == payload


def test_raw_to_wav_same_layout_only_adds_the_header() -> None:
    payload = pcm_bytes(tone(16000, 1000.0, 0.2))
    out = stream(pcm16(16000), AudioFormat(PCM_S16LE, WAV, 16000), payload, 1001)
    assert out.data == wav_header(PCM_S16LE, 16000, 1) + payload


def test_header_rate_wins_over_the_declared_rate() -> None:
    """A client says 24 kHz WAV but the header says 16 kHz: believe the header."""
    payload = pcm_bytes(tone(16000, 1000.0))
    out = stream(AudioFormat(PCM_S16LE, WAV, 24000), pcm16(24000), _wav(payload, len(payload)), 1001)
    got = probe(out.data, pcm16(24000))
    assert got.duration == pytest.approx(1.0, abs=0.002)
    assert got.dominant_hz() == pytest.approx(1000, abs=2)


@pytest.mark.parametrize(
    "codec", ["pcm_u8", "pcm_s16le", "pcm_s24le", "pcm_s32le", "pcm_f32le", "pcm_f64le", "pcm_mulaw", "pcm_alaw"]
)
@pytest.mark.parametrize("declared", [True, False], ids=["declared", "sniffed"])
def test_every_wav_sample_layout(codec: str, declared: bool) -> None:
    """Files from FFmpeg's WAV muxer (24/32-bit ones use WAVE_FORMAT_EXTENSIBLE)."""
    wav = encode_file("wav", codec, 16000, freq=1000)
    src = AudioFormat(PCM_S16LE, WAV, 16000) if declared else None
    out = stream(src, pcm16(24000), wav, 1001)
    assert not out.transcoder.passthrough
    got = probe(out.data, pcm16(24000))
    assert got.duration == pytest.approx(1.0, abs=0.002)
    assert got.dominant_hz() == pytest.approx(1000, abs=2)
    assert got.peak() == pytest.approx(0.5, abs=0.03)


def test_stereo_wav_downmixes_to_mono() -> None:
    wav = encode_file("wav", "pcm_s16le", 44100, 2, freq=1000)
    out = stream(None, pcm16(16000), wav, 4096)
    got = probe(out.data, pcm16(16000))
    assert got.dominant_hz() == pytest.approx(1000, abs=2)


@pytest.mark.parametrize(
    ("wav", "message"),
    [
        (b"RIFF\x00\x00\x00\x00WAVX" + b"\x00" * 40, "not a WAV"),
        (_wav(b"\x00" * 100, 100, tag=0x11, bits=4), "unsupported WAV encoding"),
        (b"RIFF\xff\xff\xff\xffWAVEdata\x10\x00\x00\x00" + b"\x00" * 16, "data chunk before fmt"),
        (_wav(b"\x00" * 100, 100, rate=500), "sample rate"),
    ],
)
def test_bad_wav_headers(wav: bytes, message: str) -> None:
    with pytest.raises(AudioError, match=message):
        stream(AudioFormat(PCM_S16LE, WAV, 16000), pcm16(16000), wav, 7)


def test_wav_format_change_between_files_is_refused() -> None:
    a = _wav(b"\x00" * 64, 64)
    b = _wav(b"\x00" * 64, 64, rate=8000)
    with pytest.raises(AudioError, match="changed"):
        stream(AudioFormat(PCM_S16LE, WAV, 16000), pcm16(16000), a + b, 50)


def test_wav_decode_to_raw_g711() -> None:
    out = stream(None, AudioFormat(MULAW, RAW, 8000), encode_file("wav", "pcm_s16le", 24000, freq=1000), 640)
    got = probe(out.data, AudioFormat(MULAW, RAW, 8000))
    assert got.duration == pytest.approx(1.0, abs=0.002)
    assert got.dominant_hz() == pytest.approx(1000, abs=2)
    assert np.isfinite(got.samples).all()
