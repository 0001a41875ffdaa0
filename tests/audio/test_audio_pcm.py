"""The numpy/soxr paths: G.711 against FFmpeg, chunking that splits samples, mixing, mid-stream flush."""

from __future__ import annotations

from fractions import Fraction
from typing import cast

import av
import numpy as np
import pytest

from gateway.audio import g711
from gateway.audio.formats import ALAW, MULAW, PCM_F32LE, PCM_S16LE, RAW, AudioFormat, pcm16
from gateway.audio.pcm import PcmDecoder
from gateway.audio.pipeline import PcmTranscoder
from gateway.audio.transcode import make_transcoder

from .kit import chunks, pcm_bytes, probe, stream, tone


def _ffmpeg_encode(codec: str, samples: np.ndarray) -> bytes:
    ctx = cast(av.AudioCodecContext, av.CodecContext.create(codec, "w"))
    ctx.sample_rate, ctx.layout, ctx.format, ctx.time_base = 8000, "mono", "s16", Fraction(1, 8000)
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate, frame.pts = 8000, 0
    return b"".join(bytes(p) for p in ctx.encode(frame) + ctx.encode(None))


def _ffmpeg_decode(codec: str, data: bytes) -> np.ndarray:
    ctx = cast(av.AudioCodecContext, av.CodecContext.create(codec, "r"))
    ctx.sample_rate, ctx.layout = 8000, "mono"
    return np.concatenate([f.to_ndarray().reshape(-1) for f in ctx.decode(av.Packet(data))])


@pytest.mark.parametrize("codec", [MULAW, ALAW])
def test_g711_matches_ffmpeg_codecs(codec: str) -> None:
    rng = np.random.default_rng(7)
    samples = np.concatenate([rng.integers(-32768, 32768, 20000), np.array([-32768, -1, 0, 1, 32767])]).astype(np.int16)
    assert g711.encode(codec, samples).tobytes() == _ffmpeg_encode(codec, samples)
    codes = bytes(range(256)) + rng.integers(0, 256, 1000).astype(np.uint8).tobytes()
    assert np.array_equal(g711.decode(codec, np.frombuffer(codes, np.uint8)), _ffmpeg_decode(codec, codes))


@pytest.mark.parametrize("size", [1, 3, 5, 7, 1001])
def test_odd_chunks_split_samples_without_loss(size: int) -> None:
    """s16 -> mu-law at one rate: every byte split must give exactly the one-shot output."""
    data = pcm_bytes(tone(8000, 1000.0, 0.25))
    whole = stream(pcm16(8000), AudioFormat(MULAW, RAW, 8000), data, len(data)).data
    split = stream(pcm16(8000), AudioFormat(MULAW, RAW, 8000), data, size).data
    assert split == whole
    assert len(whole) == len(data) // 2


def test_odd_chunks_stereo_f32_carry() -> None:
    """A frame is 8 bytes here; 1001-byte chunks end inside samples and inside frames."""
    src = AudioFormat(PCM_F32LE, RAW, 16000, 2)
    data = pcm_bytes(tone(16000, 1000.0, channels=2), PCM_F32LE)
    out = stream(src, pcm16(16000), data, 1001)
    got = probe(out.data, pcm16(16000))
    assert len(got.samples) == 16000
    assert got.dominant_hz() == pytest.approx(1000, abs=2)
    assert got.peak() == pytest.approx(0.5, abs=0.01)  # downmix averages identical channels


def test_resampling_does_not_depend_on_chunking() -> None:
    data = pcm_bytes(tone(24000, 440.0))
    outs = [
        np.frombuffer(stream(pcm16(24000), pcm16(16000), data, n).data, np.int16).astype(int)
        for n in (len(data), 3840, 1001, 17)
    ]
    assert all(len(o) == 16000 for o in outs)
    for o in outs[1:]:
        assert np.abs(o - outs[0]).max() <= 4  # soxr's block boundaries move rounding, nothing more


def test_decoder_reports_pending_partial_sample() -> None:
    dec = PcmDecoder(PCM_S16LE, 2)
    assert dec.decode(b"\x01\x00\x02") is None
    assert dec.pending == 3
    x = dec.decode(b"\x00\x03\x00\x04")  # 7 bytes: one 4-byte frame, 3 left over
    assert x is not None and x.tolist() == [[1, 2]]
    assert dec.pending == 3
    x = dec.decode(b"\x00")
    assert x is not None and x.tolist() == [[3, 4]]
    assert dec.pending == 0


def test_flush_mid_stream_then_continue() -> None:
    """Deepgram Finalize: drain what we have, keep going with the same stream."""
    tc = make_transcoder(pcm16(24000), pcm16(16000))
    data = pcm_bytes(tone(24000, 440.0))
    half = len(data) // 2 + 1  # odd: a sample is split across the flush
    out = tc.feed(data[:half]) + tc.flush()
    assert len(out) > 0
    out += b"".join(tc.feed(c) for c in chunks(data[half:], 3840)) + tc.flush()
    got = probe(out, pcm16(16000))
    assert got.duration == pytest.approx(1.0, abs=0.002)
    assert got.dominant_hz() == pytest.approx(440, abs=2)


def test_raw_pcm_path_uses_no_pyav() -> None:
    tc = make_transcoder(pcm16(48000), AudioFormat(MULAW, RAW, 8000))
    assert isinstance(tc, PcmTranscoder)


@pytest.mark.parametrize("encoding", [PCM_S16LE, PCM_F32LE, MULAW, ALAW])
def test_every_raw_encoding_round_trips(encoding: str) -> None:
    """pcm s16 -> each raw encoding -> back, at another rate: pitch and level survive."""
    there = AudioFormat(encoding, RAW, 16000)
    out = stream(pcm16(24000), there, pcm_bytes(tone(24000, 1000.0)), 1001)
    back = stream(there, pcm16(24000), out.data, 999)
    got = probe(back.data, pcm16(24000))
    assert got.duration == pytest.approx(1.0, abs=0.003)
    assert got.dominant_hz() == pytest.approx(1000, abs=2)
    assert got.peak() == pytest.approx(0.5, abs=0.03)
